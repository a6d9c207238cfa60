//! The `Store` contract, written once against the trait: every implementation runs it (today
//! the SQLite [`super::Ledger`]; a PostgreSQL store runs the same cases). Nothing here reads a
//! table or names a backend: each case opens a fresh store through the factory it is given and
//! speaks only through [`Store`].
//!
//! Not yet in the contract, because not yet in the trait: ownership of in-flight work (who is
//! sending a delivery or running a job, until when) and its expiry.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::{Begin, Claim, CodeConflict, CodeFilter, Definition, JobCodes, JobRefused, JobState, PlannedTarget, Store};
use crate::domain::delivery::{CreateResponse, Status, TargetResult};

/// Opens a fresh, empty store.
pub(crate) type Open<'a> = &'a (dyn Fn() -> Arc<dyn Store> + Sync);

/// Every case, each on a store of its own.
pub(crate) async fn run(open: Open<'_>) {
    a_claim_is_recorded_before_any_call_and_read_back_as_unfinished(open()).await;
    one_claim_per_code_and_upstream_under_concurrency(open()).await;
    idempotency_keys_replay_refuse_and_expire(open()).await;
    codes_are_one_whatever_their_case(open()).await;
    an_upstream_holds_a_code_for_one_campaign(open()).await;
    a_code_is_redefined_only_where_no_vendor_holds_it(open()).await;
    a_delivered_target_is_not_claimed_again(open()).await;
    a_job_is_taken_whole_or_not_at_all(open()).await;
    a_jobs_counts_follow_its_outcomes_through_retry_and_cancel(open()).await;
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
        .begin_create(
            key.map(str::to_owned),
            body(code, campaign, percent),
            definition(code, campaign, percent),
            targets(at),
            Utc::now(),
            chrono::Duration::hours(1),
        )
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
    assert!(matches!(claims[..], [Claim::Send, Claim::Send]), "{claims:?}");
    let unfinished = store.unfinished_requests().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!((unfinished[0].request_id, unfinished[0].code_id), (request_id, code_id));
    assert_eq!(unfinished[0].pending, ["a", "b"]);
    let stored = store.request(request_id).await.unwrap().unwrap();
    assert!(!stored.finished);
    assert_eq!(stored.pending, ["a", "b"]);
    // One outcome, then the answer with the other: finished, nothing left to resume.
    store
        .record(vec![(code_id, outcome("a", Status::Created))])
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
        .finish_request(request_id, &response, vec![(code_id, results[1].clone())])
        .await
        .unwrap();
    assert!(store.unfinished_requests().unwrap().is_empty());
    let stored = store.request(request_id).await.unwrap().unwrap();
    assert!(stored.finished && stored.pending.is_empty());
    let now: Vec<Status> = store
        .delivery_results(code_id, vec!["a".into(), "b".into()])
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
    let response = CreateResponse {
        code: "IDEM-1".into(),
        dry_run: false,
        request_id: Some(request_id),
        results: vec![outcome("a", Status::Created)],
    };
    store
        .finish_request(request_id, &response, vec![(code_id, outcome("a", Status::Created))])
        .await
        .unwrap();
    match begin_keyed(&*store, Some("key-1"), "IDEM-1", "c", 20, &["a"]).await {
        Begin::Replay(replayed) => assert_eq!(replayed.request_id, Some(request_id)),
        other => panic!("expected the first answer, got {other:?}"),
    }
    // After its window the key names nothing: a create with it is new.
    let later = store
        .begin_create(
            Some("key-1".into()),
            body("IDEM-2", "c", 20),
            definition("IDEM-2", "c", 20),
            targets(&["a"]),
            Utc::now() + chrono::Duration::hours(2),
            chrono::Duration::hours(1),
        )
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
    store.record(vec![(held, outcome("a", Status::Created))]).await.unwrap();
    assert!(matches!(
        begin_keyed(&*store, None, "DEF-1", "c", 30, &["a"]).await,
        Begin::Conflict(CodeConflict::Redefined { .. })
    ));
    // Every target refused it: no vendor holds it, so another definition replaces it.
    let (_, refused, _) = new(begin_keyed(&*store, None, "DEF-2", "c", 20, &["a"]).await);
    store
        .record(vec![(refused, outcome("a", Status::Rejected))])
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
        .record(vec![
            (code_id, outcome("a", Status::Created)),
            (code_id, outcome("b", Status::Failed)),
        ])
        .await
        .unwrap();
    let (_, _, claims) = new(begin(&*store, "DONE-1", "c", &["a", "b"]).await);
    match &claims[..] {
        [Claim::Done(prior), Claim::Send] => assert_eq!(prior.status, Status::Created),
        other => panic!("{other:?}"),
    }
}

fn job(
    store: &dyn Store,
    campaign: &str,
    at: &[&str],
    items: Vec<(String, Result<Definition, String>)>,
) -> Result<i64, JobRefused> {
    let at: Vec<String> = at.iter().map(|t| t.to_string()).collect();
    store.create_job(
        campaign,
        &at,
        "json",
        json!({}),
        JobCodes::Items(Box::new(items.into_iter())),
    )
}

fn items(campaign: &str, codes: &[&str]) -> Vec<(String, Result<Definition, String>)> {
    codes
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("codes[{i}]"), Ok(definition(c, campaign, 20))))
        .collect()
}

async fn a_job_is_taken_whole_or_not_at_all(store: Arc<dyn Store>) {
    let mut bad = items("j", &["J-1", "J-2", "J-3"]);
    bad[1].1 = Err("discount: is required".into());
    match job(&*store, "j", &["a"], bad) {
        Err(JobRefused::Items { problems, count }) => {
            assert_eq!(count, 1);
            assert_eq!(problems[0].0, "codes[1]");
        }
        other => panic!("{other:?}"),
    }
    assert!(codes_of(&*store, "j").await.is_empty(), "a refused job leaves no code");
    // The same code twice in one job is a clash.
    assert!(matches!(
        job(&*store, "j", &["a"], items("j", &["J-1", "j-1"])),
        Err(JobRefused::Items { .. })
    ));
    assert!(codes_of(&*store, "j").await.is_empty());
    let id = job(&*store, "j", &["a", "b"], items("j", &["J-1", "J-2", "J-3"])).unwrap();
    let record = store.job(id).await.unwrap().unwrap();
    assert_eq!((record.state, record.total), (JobState::Running, 3));
    assert_eq!(store.running_jobs().unwrap(), [id]);
    let counts = store.job_counts(id).await.unwrap();
    for target in ["a", "b"] {
        assert_eq!(counts[target].get(&Status::Pending), Some(&3), "{counts:?}");
    }
}

async fn a_jobs_counts_follow_its_outcomes_through_retry_and_cancel(store: Arc<dyn Store>) {
    let id = job(&*store, "k", &["a"], items("k", &["K-1", "K-2", "K-3"])).unwrap();
    let work = store.job_work(id, "a".into(), 0, 100).await.unwrap();
    assert_eq!(work.len(), 3);
    store
        .record(vec![
            (work[0].code_id, outcome("a", Status::Created)),
            (work[1].code_id, outcome("a", Status::Failed)),
        ])
        .await
        .unwrap();
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Created), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Failed), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending), Some(&1), "{counts:?}");
    // Cancelled: what was still pending is cancelled, and stays so.
    store.end_job(id, JobState::Cancelled).await.unwrap();
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Cancelled);
    assert!(store.running_jobs().unwrap().is_empty());
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Cancelled), Some(&1), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Pending).copied().unwrap_or(0), 0, "{counts:?}");
    // A retry reopens the failed and the cancelled, never the created.
    assert_eq!(store.retry_job(id).await.unwrap(), 2);
    assert_eq!(store.running_jobs().unwrap(), [id]);
    let work = store.job_work(id, "a".into(), 0, 100).await.unwrap();
    assert_eq!(work.len(), 2);
    let counts = store.job_counts(id).await.unwrap();
    assert_eq!(counts["a"].get(&Status::Pending), Some(&2), "{counts:?}");
    assert_eq!(counts["a"].get(&Status::Created), Some(&1), "{counts:?}");
    store.end_job(id, JobState::Done).await.unwrap();
    assert_eq!(store.job(id).await.unwrap().unwrap().state, JobState::Done);
}
