//! The store contract for a revoke job: its codes are named (each a code of the campaign, once),
//! the job is accepted whole or not at all, and accepting it marks every code revoked and claims
//! each target's revocation for the job, except what another revoke has settled or is settling.
//! Its counts, work, results, cancel and retry follow the revocations, not the deliveries.

use std::sync::Arc;

use serde_json::json;

use super::{begin, finish_created, new, outcome};
use crate::domain::code::CodeConflict;
use crate::domain::delivery::Status;
use crate::domain::job::{JobState, NewJob, Staged, WorkItem};
use crate::domain::request::{Begin, OpKind, PlannedTarget};
use crate::ports::Store;

pub(super) async fn run(open: super::Open<'_>) {
    a_revoke_job_claims_each_code_and_target_once(open().store).await;
    a_refused_revoke_job_leaves_nothing_behind(open().store).await;
}

fn revoke_job(targets: &[&str]) -> NewJob {
    NewJob {
        operation: OpKind::Revoke,
        campaign: "c".into(),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        source: "json".into(),
        options: json!({ "delete": false }),
    }
}

/// A code created at `a` (with the vendor's id).
async fn created(store: &dyn Store, code: &str) -> i64 {
    let (request_id, code_id, _) = new(begin(store, code, "c", &["a"]).await);
    finish_created(store, code, request_id, code_id).await;
    code_id
}

async fn a_revoke_job_claims_each_code_and_target_once(store: Arc<dyn Store>) {
    let one = created(&*store, "RJ-1").await;
    let two = created(&*store, "RJ-2").await;
    let (request_id, three, _) = new(begin(&*store, "RJ-3", "c", &["a"]).await);
    store
        .finish_request(
            request_id,
            OpKind::Create,
            json!({ "results": [] }).to_string(),
            vec![(three, outcome("a", Status::Failed))],
        )
        .await
        .unwrap();
    // RJ-2 was revoked at `a` by a request before the job.
    let single = crate::domain::request::NewRevoke {
        key: None,
        body: json!({ "campaign": "c", "code": "RJ-2" }),
        campaign: "c".into(),
        code: "RJ-2".into(),
        targets: vec![PlannedTarget {
            upstream: "a".into(),
            settled: None,
        }],
        requested_by: None,
        now: chrono::Utc::now(),
        key_window: chrono::Duration::hours(1),
    };
    let Begin::Revoking { request_id, .. } = store.begin_revoke(single).await.unwrap() else {
        panic!("the revoke was not recorded")
    };
    store
        .finish_request(
            request_id,
            OpKind::Revoke,
            json!({ "results": [] }).to_string(),
            vec![(two, outcome("a", Status::Revoked))],
        )
        .await
        .unwrap();

    let id = store.begin_job(revoke_job(&["a", "b"])).await.unwrap();
    let staged = store
        .stage_revokes(id, ["rj-1", "RJ-2", "NOPE", "RJ-1", "RJ-3"].map(String::from).to_vec())
        .await
        .unwrap();
    assert!(
        matches!(
            &staged[..],
            [
                Staged::Accepted,
                Staged::Accepted,
                Staged::Unknown,
                Staged::Refused(CodeConflict::Repeated { existing }),
                Staged::Accepted
            ] if existing == "RJ-1"
        ),
        "{staged:?}"
    );
    assert!(store.job(id).await.unwrap().is_none(), "a staging job is not shown");
    let before = store.code("RJ-1".into(), Some("c".into())).await.unwrap();
    assert!(before[0].revoked_at.is_none(), "staging revokes nothing");

    store.commit_job(id).await.unwrap();
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.operation, job.state, job.total),
        (OpKind::Revoke, JobState::Running, 3)
    );
    let held = store.code("RJ-1".into(), Some("c".into())).await.unwrap();
    assert!(
        held[0].revoked_at.is_some(),
        "accepting the job marks its codes revoked"
    );
    // A create of a job's code is refused from then on.
    assert!(matches!(
        begin(&*store, "RJ-1", "c", &["b"]).await,
        Begin::Conflict(CodeConflict::Revoked { .. })
    ));
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Pending), Some(&2), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Revoked), Some(&1), "{counts:?}");
    assert_eq!(counts["b"].get(&Status::Pending), Some(&3), "{counts:?}");

    // The work is each claimed code with what the ledger holds of it; RJ-2 at `a` is not.
    let work = store.job_work(id, "a".into(), 0, 10).await.unwrap();
    let codes: Vec<(i64, String, Status)> = work
        .iter()
        .map(|w| match &w.item {
            WorkItem::Revoke(record) => (w.code_id, record.code.clone(), record.deliveries["a"].status),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            (one, "RJ-1".to_owned(), Status::Created),
            (three, "RJ-3".to_owned(), Status::Failed)
        ]
    );
    let mut revoked = outcome("a", Status::Revoked);
    revoked.action = Some(promo_adapters::operation::RevokeAction::Archived);
    revoked.attempts = 1;
    store
        .record(
            OpKind::Revoke,
            vec![(one, revoked), (three, outcome("a", Status::NotDelivered))],
        )
        .await
        .unwrap();
    assert!(store.job_work(id, "a".into(), 0, 10).await.unwrap().is_empty());
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Revoked), Some(&2), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::NotDelivered), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending), None, "{counts:?}");

    let results = store
        .job_results(id, None, Some("a".into()), (0, String::new()), 10)
        .await
        .unwrap();
    let lines: Vec<(&str, Status, u32)> = results
        .iter()
        .map(|r| (r.code.as_str(), r.status, r.attempts))
        .collect();
    assert_eq!(
        lines,
        [
            ("RJ-1", Status::Revoked, 1),
            ("RJ-2", Status::Revoked, 0),
            ("RJ-3", Status::NotDelivered, 0)
        ]
    );
    assert_eq!(
        results[0].action,
        Some(promo_adapters::operation::RevokeAction::Archived)
    );
    assert!(
        results[1]
            .warnings
            .iter()
            .any(|w| w.message.contains("a revoke request")),
        "the line says another revoke did it: {:?}",
        results[1].warnings
    );

    // A cancel settles what is left (`b`) as cancelled; a retry claims it again.
    assert!(store.end_job(id, JobState::Cancelled).await.unwrap());
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["b"].get(&Status::Cancelled), Some(&3), "{counts:?}");
    assert_eq!(store.retry_job(id).await.unwrap(), 3);
    assert_eq!(store.job_work(id, "b".into(), 0, 10).await.unwrap().len(), 3);
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["b"].get(&Status::Pending), Some(&3), "{counts:?}");
    assert_eq!(
        counts["a"].get(&Status::Revoked),
        Some(&2),
        "a retry leaves what is settled"
    );
    // The create job's tally of these codes is not the revoke job's: a revocation moves only
    // revoke jobs' counts.
    store
        .record(OpKind::Revoke, vec![(one, outcome("b", Status::NotDelivered))])
        .await
        .unwrap();
    assert_eq!(
        store.job_counts(id).await.unwrap()["b"].get(&Status::NotDelivered),
        Some(&1)
    );
}

async fn a_refused_revoke_job_leaves_nothing_behind(store: Arc<dyn Store>) {
    created(&*store, "RD-1").await;
    let id = store.begin_job(revoke_job(&["a"])).await.unwrap();
    let staged = store.stage_revokes(id, vec!["RD-1".into()]).await.unwrap();
    assert_eq!(staged, [Staged::Accepted]);
    store.discard_job(id).await.unwrap();
    assert!(store.job(id).await.unwrap().is_none());
    let held = store.code("RD-1".into(), Some("c".into())).await.unwrap();
    assert!(held[0].revoked_at.is_none(), "a refused job revokes nothing");
    assert!(held[0].revocations.is_empty());
    // The code can be named by the next job.
    let next = store.begin_job(revoke_job(&["a"])).await.unwrap();
    assert_eq!(
        store.stage_revokes(next, vec!["RD-1".into()]).await.unwrap(),
        [Staged::Accepted]
    );
    store.commit_job(next).await.unwrap();
    assert_eq!(store.job(next).await.unwrap().unwrap().total, 1);
}
