//! The `Store` contract, written once against the trait: every implementation runs it (today
//! the SQLite store; a PostgreSQL store runs the same cases). Nothing here reads a table or
//! names a backend: each case opens a fresh store through the factory it is given (and, for
//! ownership, a second handle on the same backend as another process) and speaks only through
//! [`Store`].

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use crate::domain::code::{CodeConflict, CodeFilter, Definition};
use crate::domain::delivery::{CreateResponse, Status, TargetResult};
use crate::domain::job::{JobState, NewJob, StageAs, Staged, WorkItem};
use crate::domain::request::{Begin, Claim, NewCreate, OpKind, PlannedTarget};
use crate::ports::Store;

mod revoke;
mod revoke_job;

/// Opens a fresh, empty store.
pub(crate) type Open<'a> = &'a (dyn Fn() -> Opened + Sync);

/// A fresh store, and a way to open a second handle on its backend as another owner (another
/// process) with the same lease length.
pub(crate) struct Opened {
    pub store: Arc<dyn Store>,
    pub peer: Box<dyn Fn() -> Arc<dyn Store> + Send + Sync>,
}

/// The lease the factories open their stores with.
pub(crate) const LEASE: chrono::Duration = chrono::Duration::seconds(30);

/// Every case, each on a store of its own.
pub(crate) async fn run(open: Open<'_>) {
    work_in_flight_has_an_owner_until_its_lease_runs_out(open()).await;
    a_released_owners_work_is_adopted_at_once(open()).await;
    owners_racing_for_one_code_claim_it_once(open()).await;
    an_idempotency_key_holds_across_owners(open()).await;
    a_jobs_work_goes_to_its_owner_and_a_cancel_ends_it_for_everyone(open()).await;
    a_claim_is_recorded_before_any_call_and_read_back_as_unfinished(open().store).await;
    one_claim_per_code_and_upstream_under_concurrency(open().store).await;
    idempotency_keys_replay_refuse_and_expire(open().store).await;
    codes_are_one_whatever_their_case(open().store).await;
    an_upstream_holds_a_code_for_one_campaign(open().store).await;
    a_code_is_redefined_only_where_no_vendor_holds_it(open().store).await;
    a_delivered_target_is_not_claimed_again(open().store).await;
    a_job_is_taken_whole_or_not_at_all(open().store).await;
    a_jobs_counts_follow_its_outcomes_through_retry_and_cancel(open().store).await;
    revoke::run(open).await;
    revoke_job::run(open).await;
}

fn body(code: &str, campaign: &str, percent: u32) -> Value {
    json!({ "code": code, "campaign": campaign, "discount": { "percent_off": percent } })
}

fn definition(code: &str, campaign: &str, percent: u32) -> Definition {
    Definition::of(&body(code, campaign, percent), Some(campaign), code)
}

fn targets(names: &[&str]) -> Vec<PlannedTarget> {
    names
        .iter()
        .map(|t| PlannedTarget {
            upstream: (*t).into(),
            settled: None,
        })
        .collect()
}

async fn begin_keyed(
    store: &dyn Store,
    key: Option<&str>,
    code: &str,
    campaign: &str,
    percent: u32,
    at: &[&str],
) -> Begin {
    store
        .begin_create(NewCreate {
            key: key.map(str::to_owned),
            body: body(code, campaign, percent),
            definition: definition(code, campaign, percent),
            targets: targets(at),
            requested_by: None,
            now: Utc::now(),
            key_window: chrono::Duration::hours(1),
        })
        .await
        .expect("the store answers")
}

async fn begin(store: &dyn Store, code: &str, campaign: &str, at: &[&str]) -> Begin {
    begin_keyed(store, None, code, campaign, 20, at).await
}

fn new(begun: Begin) -> (i64, i64, Vec<Claim>) {
    match begun {
        Begin::New {
            request_id,
            code_id,
            claims,
        } => (request_id, code_id, claims),
        other => panic!("expected a new create, got {other:?}"),
    }
}

/// Finishes a create of `code` whose one target, `a`, the vendor created.
async fn finish_created(store: &dyn Store, code: &str, request_id: i64, code_id: i64) {
    let response = CreateResponse {
        code: code.into(),
        dry_run: false,
        request_id: Some(request_id),
        results: vec![outcome("a", Status::Created)],
    };
    store
        .finish_request(
            request_id,
            OpKind::Create,
            written(&response),
            vec![(code_id, outcome("a", Status::Created))],
        )
        .await
        .unwrap();
}

/// An answer as the engine hands it to the store.
fn written(response: &CreateResponse) -> String {
    serde_json::to_string(response).unwrap()
}

/// The request id of an answer a store replayed.
fn replayed_id(written: &str) -> Option<i64> {
    serde_json::from_str::<CreateResponse>(written).unwrap().request_id
}

fn outcome(upstream: &str, status: Status) -> TargetResult {
    TargetResult::new(upstream, None, status)
}

async fn codes_of(store: &dyn Store, campaign: &str) -> Vec<String> {
    let filter = CodeFilter {
        campaign: Some(campaign.into()),
        upstream: None,
        status: None,
        after: 0,
        limit: 1000,
    };
    let page = store.codes(filter).await.unwrap();
    page.into_iter().map(|(_, c)| c.code).collect()
}

async fn a_claim_is_recorded_before_any_call_and_read_back_as_unfinished(store: Arc<dyn Store>) {
    let (request_id, code_id, claims) = new(begin(&*store, "CLAIM-1", "c", &["a", "b"]).await);
    // The code's id, by its name in any case, in its campaign only.
    assert_eq!(
        store.code_id("c".into(), "claim-1".into()).await.unwrap(),
        Some(code_id)
    );
    assert_eq!(store.code_id("other".into(), "CLAIM-1".into()).await.unwrap(), None);
    assert!(matches!(claims[..], [Claim::Send, Claim::Send]), "{claims:?}");
    let unfinished = store.unfinished_requests().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!((unfinished[0].request_id, unfinished[0].code_id), (request_id, code_id));
    assert_eq!(unfinished[0].pending, ["a", "b"]);
    let stored = store.request(request_id).await.unwrap().unwrap();
    assert!(!stored.finished);
    assert_eq!(stored.pending, ["a", "b"]);
    // One outcome, then the answer with the other: finished, nothing left to resume.
    store
        .record(OpKind::Create, vec![(code_id, outcome("a", Status::Created))])
        .await
        .unwrap();
    let results = vec![outcome("a", Status::Created), outcome("b", Status::Failed)];
    let response = CreateResponse {
        code: "CLAIM-1".into(),
        dry_run: false,
        request_id: Some(request_id),
        results: results.clone(),
    };
    store
        .finish_request(
            request_id,
            OpKind::Create,
            written(&response),
            vec![(code_id, results[1].clone())],
        )
        .await
        .unwrap();
    assert!(store.unfinished_requests().await.unwrap().is_empty());
    let stored = store.request(request_id).await.unwrap().unwrap();
    assert!(stored.finished && stored.pending.is_empty());
    let now: Vec<Status> = store
        .target_results(OpKind::Create, code_id, vec!["a".into(), "b".into()])
        .await
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(now, [Status::Created, Status::Failed]);
}

async fn one_claim_per_code_and_upstream_under_concurrency(store: Arc<dyn Store>) {
    let racers = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { begin(&*store, "RACE-1", "c", &["a"]).await })
    });
    let mut sends = 0;
    for racer in racers {
        let (_, _, claims) = new(racer.await.unwrap());
        match claims[..] {
            [Claim::Send] => sends += 1,
            [Claim::Elsewhere] => {}
            ref other => panic!("{other:?}"),
        }
    }
    assert_eq!(sends, 1, "exactly one create may send a code to an upstream");
}

async fn idempotency_keys_replay_refuse_and_expire(store: Arc<dyn Store>) {
    let (request_id, code_id, _) = new(begin_keyed(&*store, Some("key-1"), "IDEM-1", "c", 20, &["a"]).await);
    // While the first runs: in progress; with another body: refused.
    assert!(matches!(
        begin_keyed(&*store, Some("key-1"), "IDEM-1", "c", 20, &["a"]).await,
        Begin::InProgress(id) if id == request_id
    ));
    assert!(matches!(
        begin_keyed(&*store, Some("key-1"), "IDEM-1", "c", 30, &["a"]).await,
        Begin::KeyReused(id) if id == request_id
    ));
    finish_created(&*store, "IDEM-1", request_id, code_id).await;
    match begin_keyed(&*store, Some("key-1"), "IDEM-1", "c", 20, &["a"]).await {
        Begin::Replay(replayed) => assert_eq!(replayed_id(&replayed), Some(request_id)),
        other => panic!("expected the first answer, got {other:?}"),
    }
    // After its window the key names nothing: a create with it is new.
    let later = store
        .begin_create(NewCreate {
            key: Some("key-1".into()),
            body: body("IDEM-2", "c", 20),
            definition: definition("IDEM-2", "c", 20),
            targets: targets(&["a"]),
            requested_by: None,
            now: Utc::now() + chrono::Duration::hours(2),
            key_window: chrono::Duration::hours(1),
        })
        .await
        .unwrap();
    assert!(matches!(later, Begin::New { .. }), "{later:?}");
}

async fn codes_are_one_whatever_their_case(store: Arc<dyn Store>) {
    new(begin(&*store, "SPRING20", "c", &["a"]).await);
    for other in ["spring20", "Spring20", "\u{FF33}PRING20"] {
        match begin(&*store, other, "c", &["a"]).await {
            Begin::Conflict(CodeConflict::OtherCase { existing }) => assert_eq!(existing, "SPRING20"),
            got => panic!("{other}: {got:?}"),
        }
    }
    let found = store.code("spring20".into(), None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "SPRING20");
}

async fn an_upstream_holds_a_code_for_one_campaign(store: Arc<dyn Store>) {
    new(begin(&*store, "HOLD-1", "a", &["u1"]).await);
    match begin(&*store, "hold-1", "b", &["u2", "u1"]).await {
        Begin::Conflict(CodeConflict::OtherCampaign { held_by }) => {
            assert_eq!(held_by.len(), 1);
            assert_eq!(held_by[0].campaign.as_deref(), Some("a"));
            assert_eq!(held_by[0].upstreams, ["u1"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        codes_of(&*store, "b").await.is_empty(),
        "a refused create writes nothing"
    );
    // At another upstream, the code is b's to claim.
    let (_, _, claims) = new(begin(&*store, "hold-1", "b", &["u2"]).await);
    assert!(matches!(claims[..], [Claim::Send]));
}

async fn a_code_is_redefined_only_where_no_vendor_holds_it(store: Arc<dyn Store>) {
    let (_, held, _) = new(begin_keyed(&*store, None, "DEF-1", "c", 20, &["a"]).await);
    store
        .record(OpKind::Create, vec![(held, outcome("a", Status::Created))])
        .await
        .unwrap();
    assert!(matches!(
        begin_keyed(&*store, None, "DEF-1", "c", 30, &["a"]).await,
        Begin::Conflict(CodeConflict::Redefined { .. })
    ));
    // Every target refused it: no vendor holds it, so another definition replaces it.
    let (_, refused, _) = new(begin_keyed(&*store, None, "DEF-2", "c", 20, &["a"]).await);
    store
        .record(OpKind::Create, vec![(refused, outcome("a", Status::Rejected))])
        .await
        .unwrap();
    let (_, again, claims) = new(begin_keyed(&*store, None, "DEF-2", "c", 30, &["a"]).await);
    assert_eq!(again, refused, "the same code, redefined");
    assert!(matches!(claims[..], [Claim::Send]));
    let found = store.code("DEF-2".into(), Some("c".into())).await.unwrap();
    assert_eq!(found[0].definition["discount"]["percent_off"], 30);
}

async fn a_delivered_target_is_not_claimed_again(store: Arc<dyn Store>) {
    let (_, code_id, _) = new(begin(&*store, "DONE-1", "c", &["a", "b"]).await);
    store
        .record(
            OpKind::Create,
            vec![
                (code_id, outcome("a", Status::Created)),
                (code_id, outcome("b", Status::Failed)),
            ],
        )
        .await
        .unwrap();
    let (_, _, claims) = new(begin(&*store, "DONE-1", "c", &["a", "b"]).await);
    match &claims[..] {
        [Claim::Done(prior), Claim::Send] => assert_eq!(prior.status, Status::Created),
        other => panic!("{other:?}"),
    }
}

/// A job's intake through the staged trait: begun, its items staged, then committed when every
/// item was accepted or discarded when one was not (the refusals, by item index).
async fn job(
    store: &dyn Store,
    campaign: &str,
    at: &[&str],
    items: Vec<Definition>,
) -> Result<i64, Vec<(usize, Staged)>> {
    let id = store
        .begin_job(NewJob {
            operation: OpKind::Create,
            campaign: campaign.into(),
            targets: at.iter().map(|t| t.to_string()).collect(),
            source: "json".into(),
            options: json!({}),
        })
        .await
        .unwrap();
    // Two slices, as the engine stages a long job.
    let mut verdicts = Vec::new();
    let mut items = items;
    let rest = items.split_off(items.len() / 2);
    for slice in [items, rest] {
        verdicts.extend(store.stage(id, slice, StageAs::Given).await.unwrap());
    }
    let refused: Vec<(usize, Staged)> = verdicts
        .into_iter()
        .enumerate()
        .filter(|(_, v)| *v != Staged::Accepted)
        .collect();
    if refused.is_empty() {
        store.commit_job(id).await.unwrap();
        Ok(id)
    } else {
        store.discard_job(id).await.unwrap();
        Err(refused)
    }
}

fn items(campaign: &str, codes: &[&str]) -> Vec<Definition> {
    codes.iter().map(|c| definition(c, campaign, 20)).collect()
}

async fn a_job_is_taken_whole_or_not_at_all(store: Arc<dyn Store>) {
    // An item another campaign holds at the target refuses the job; nothing of it stays.
    new(begin(&*store, "J-2", "other", &["a"]).await);
    match job(&*store, "j", &["a"], items("j", &["J-1", "j-2", "J-3"])).await {
        Err(refused) => {
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].0, 1);
            assert!(matches!(
                refused[0].1,
                Staged::Refused(CodeConflict::OtherCampaign { .. })
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(codes_of(&*store, "j").await.is_empty(), "a refused job leaves no code");
    // The same code twice in one job is a clash, across slices too.
    match job(&*store, "j", &["b"], items("j", &["J-1", "j-1"])).await {
        Err(refused) => assert!(matches!(
            refused[..],
            [(1, Staged::Refused(CodeConflict::Repeated { .. }))]
        )),
        other => panic!("{other:?}"),
    }
    assert!(codes_of(&*store, "j").await.is_empty());
    // A staged code is reserved: a create of it in another case waits for no one and is refused.
    let staging = store
        .begin_job(NewJob {
            operation: OpKind::Create,
            campaign: "j".into(),
            targets: vec!["b".into()],
            source: "json".into(),
            options: json!({}),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .stage(staging, items("j", &["J-9"]), StageAs::Given)
            .await
            .unwrap(),
        [Staged::Accepted]
    );
    assert!(matches!(
        begin(&*store, "j-9", "j", &["b"]).await,
        Begin::Conflict(CodeConflict::OtherCase { .. })
    ));
    // A fresh code must be new: a staged one is taken.
    let fresh = store
        .begin_job(NewJob {
            operation: OpKind::Create,
            campaign: "j".into(),
            targets: vec!["b".into()],
            source: "generate".into(),
            options: json!({}),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .stage(fresh, items("j", &["J-9", "J-10"]), StageAs::Fresh)
            .await
            .unwrap(),
        [Staged::Taken, Staged::Accepted]
    );
    store.discard_job(fresh).await.unwrap();
    store.discard_job(staging).await.unwrap();
    assert!(store.job(staging).await.unwrap().is_none(), "a discarded job is gone");
    let id = job(&*store, "j", &["a2", "b"], items("j", &["J-1", "J-2", "J-3"]))
        .await
        .unwrap();
    let record = store.job(id).await.unwrap().unwrap();
    assert_eq!((record.state, record.total), (JobState::Running, 3));
    let counts = store.job_counts(id).await.unwrap();
    for target in ["a2", "b"] {
        assert_eq!(counts[target].get(&Status::Pending), Some(&3), "{counts:?}");
    }
}

async fn a_jobs_counts_follow_its_outcomes_through_retry_and_cancel(store: Arc<dyn Store>) {
    let id = job(&*store, "k", &["a"], items("k", &["K-1", "K-2", "K-3"]))
        .await
        .unwrap();
    let work = store.job_work(id, "a".into(), 0, 100).await.unwrap();
    assert_eq!(work.len(), 3);
    store
        .record(
            OpKind::Create,
            vec![
                (work[0].code_id, outcome("a", Status::Created)),
                (work[1].code_id, outcome("a", Status::Failed)),
            ],
        )
        .await
        .unwrap();
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Created), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Failed), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending), Some(&1), "{counts:?}");
    // Cancelled: what was still pending is cancelled, and stays so.
    store.end_job(id, JobState::Cancelled).await.unwrap();
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Cancelled);
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Cancelled), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending).copied().unwrap_or(0), 0, "{counts:?}");
    // A retry reopens the failed and the cancelled, never the created.
    assert_eq!(store.retry_job(id).await.unwrap(), 2);
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Running);
    let work = store.job_work(id, "a".into(), 0, 100).await.unwrap();
    assert_eq!(work.len(), 2);
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Pending), Some(&2), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Created), Some(&1), "{counts:?}");
    store.end_job(id, JobState::Done).await.unwrap();
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Done);
    // A second job sharing a pending code counts it too, and that code's outcome moves both
    // jobs' tallies.
    let shared = work
        .iter()
        .find(|w| matches!(&w.item, WorkItem::Create { definition, .. } if definition["code"] == "K-3"))
        .expect("K-3 is pending again")
        .code_id;
    let second = job(&*store, "k", &["a"], items("k", &["K-3", "K-4"])).await.unwrap();
    let counts = store.job_counts(second).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Pending), Some(&2), "{counts:?}");
    store
        .record(OpKind::Create, vec![(shared, outcome("a", Status::Created))])
        .await
        .unwrap();
    let counts = store.job_counts(second).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Created), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending), Some(&1), "{counts:?}");
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Created), Some(&2), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending), Some(&1), "{counts:?}");
    assert_eq!(
        counts["a"].get(&Status::Cancelled).copied().unwrap_or(0),
        0,
        "{counts:?}"
    );
}

async fn work_in_flight_has_an_owner_until_its_lease_runs_out(opened: Opened) {
    let (store, other) = (opened.store, (opened.peer)());
    let (request_id, _, _) = new(begin(&*store, "OWN-1", "c", &["a"]).await);
    let job_id = job(&*store, "o", &["a"], items("o", &["OWN-2"])).await.unwrap();
    let now = Utc::now();
    // Both are this owner's, in flight: no one adopts them, this owner included.
    for handle in [&store, &other] {
        let adopted = handle.adopt(now).await.unwrap();
        assert!(adopted.creates.is_empty() && adopted.jobs.is_empty(), "{adopted:?}");
    }
    // Nor past its lease: an owner's own work is in flight with it (a renewal may have failed).
    let adopted = store.adopt(now + LEASE * 10).await.unwrap();
    assert!(adopted.creates.is_empty() && adopted.jobs.is_empty(), "{adopted:?}");
    // Renewed, the lease runs from the renewal.
    store.renew(now + LEASE - chrono::Duration::seconds(1)).await.unwrap();
    let adopted = other.adopt(now + LEASE + chrono::Duration::seconds(1)).await.unwrap();
    assert!(adopted.creates.is_empty() && adopted.jobs.is_empty(), "{adopted:?}");
    // Run out: the other owner takes both, once.
    let later = now + LEASE * 2 + chrono::Duration::seconds(1);
    let adopted = other.adopt(later).await.unwrap();
    assert_eq!(
        adopted.creates.iter().map(|u| u.request_id).collect::<Vec<_>>(),
        [request_id]
    );
    assert_eq!(adopted.creates[0].pending, ["a"]);
    assert_eq!(adopted.jobs, [job_id]);
    let again = store.adopt(later).await.unwrap();
    assert!(
        again.creates.is_empty() && again.jobs.is_empty(),
        "adopted once: {again:?}"
    );
    // Finished and ended work has no owner to adopt it.
    let code_id = adopted.creates[0].code_id;
    finish_created(&*other, "OWN-1", request_id, code_id).await;
    other.end_job(job_id, JobState::Done).await.unwrap();
    let much_later = later + LEASE * 4;
    let adopted = store.adopt(much_later).await.unwrap();
    assert!(adopted.creates.is_empty() && adopted.jobs.is_empty(), "{adopted:?}");
}

async fn a_released_owners_work_is_adopted_at_once(opened: Opened) {
    let (store, other) = (opened.store, (opened.peer)());
    let (request_id, _, _) = new(begin(&*store, "REL-1", "c", &["a"]).await);
    let job_id = job(&*store, "r", &["a"], items("r", &["REL-2"])).await.unwrap();
    store.release().await.unwrap();
    let adopted = other.adopt(Utc::now()).await.unwrap();
    assert_eq!(
        adopted.creates.iter().map(|u| u.request_id).collect::<Vec<_>>(),
        [request_id]
    );
    assert_eq!(adopted.jobs, [job_id]);
}

async fn owners_racing_for_one_code_claim_it_once(opened: Opened) {
    let handles = [opened.store, (opened.peer)()];
    let racers = (0..16).map(|i| {
        let store = handles[i % 2].clone();
        tokio::spawn(async move { begin(&*store, "RACE-2", "c", &["a"]).await })
    });
    let mut sends = 0;
    for racer in racers {
        match new(racer.await.unwrap()).2[..] {
            [Claim::Send] => sends += 1,
            [Claim::Elsewhere] => {}
            ref other => panic!("{other:?}"),
        }
    }
    assert_eq!(sends, 1, "exactly one owner may send a code to an upstream");
}

async fn an_idempotency_key_holds_across_owners(opened: Opened) {
    let (store, other) = (opened.store, (opened.peer)());
    // Both at once with one key: one create, the other sees it (running, or its answer).
    let racers = [store.clone(), other.clone()]
        .map(|s| tokio::spawn(async move { begin_keyed(&*s, Some("key-x"), "IDEM-X", "c", 20, &["a"]).await }));
    let mut created = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            Begin::New {
                request_id, code_id, ..
            } => created.push((request_id, code_id)),
            Begin::InProgress(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let [(request_id, code_id)] = created[..] else {
        panic!("one create under the key: {created:?}")
    };
    assert!(matches!(
        begin_keyed(&*other, Some("key-x"), "IDEM-X", "c", 30, &["a"]).await,
        Begin::KeyReused(id) if id == request_id
    ));
    finish_created(&*store, "IDEM-X", request_id, code_id).await;
    for handle in [&store, &other] {
        match begin_keyed(&**handle, Some("key-x"), "IDEM-X", "c", 20, &["a"]).await {
            Begin::Replay(replayed) => assert_eq!(replayed_id(&replayed), Some(request_id)),
            got => panic!("expected the first answer, got {got:?}"),
        }
    }
}

async fn a_jobs_work_goes_to_its_owner_and_a_cancel_ends_it_for_everyone(opened: Opened) {
    let (store, other) = (opened.store, (opened.peer)());
    let id = job(&*store, "w", &["a"], items("w", &["W-1", "W-2"])).await.unwrap();
    // Another owner gets none of it to send, and cannot finish it.
    assert!(other.job_work(id, "a".into(), 0, 100).await.unwrap().is_empty());
    assert!(!other.end_job(id, JobState::Done).await.unwrap());
    assert_eq!(store.job_work(id, "a".into(), 0, 100).await.unwrap().len(), 2);
    // A cancel from anyone ends it: its owner then has nothing more to send, and its own
    // end (done, as it would say once its workers stop) changes nothing.
    assert!(other.end_job(id, JobState::Cancelled).await.unwrap());
    assert!(store.job_work(id, "a".into(), 0, 100).await.unwrap().is_empty());
    assert!(!store.end_job(id, JobState::Done).await.unwrap());
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Cancelled);
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Cancelled), Some(&2), "{counts:?}");
    // A retry makes the job the retrying owner's.
    assert_eq!(other.retry_job(id).await.unwrap(), 2);
    assert_eq!(other.job_work(id, "a".into(), 0, 100).await.unwrap().len(), 2);
    assert!(store.job_work(id, "a".into(), 0, 100).await.unwrap().is_empty());
}
