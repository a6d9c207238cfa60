//! The SQLite store's own tests: the Store contract on it, and what only a file can show
//! (migrations from older versions, the tally's trigger, intake cut short by a stop).

use crate::domain::request::OpKind;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use rusqlite::{params, Connection};

use super::migrate::{Migration, MIGRATIONS};
use super::rows::stage_row;
use super::{parse_status, Ledger, Options};
use crate::domain::code::{CodeConflict, Definition, Holder};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::job::{JobState, NewJob, StageAs, Staged};
use crate::domain::request::PlannedTarget;
use crate::domain::request::{Begin, Claim, NewCreate};
use crate::ports::Store;
use crate::store::conformance;
use serde_json::json;

/// The SQLite store keeps the `Store` contract (`conformance.rs`), each case on a new file.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let opened = std::sync::atomic::AtomicUsize::new(0);
    let options = |owner: &str| Options {
        owner: owner.into(),
        lease: conformance::LEASE,
        sole_owner: false,
        ..Options::default()
    };
    let open = move || {
        let path = root.join(format!(
            "ledger-{}.db",
            opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let store: Arc<dyn Store> = Arc::new(Ledger::open_with(&path, options("first")).unwrap());
        // The peer opens the same file as another process would.
        let peer = move || -> Arc<dyn Store> { Arc::new(Ledger::open_with(&path, options("second")).unwrap()) };
        conformance::Opened {
            store,
            peer: Box::new(peer),
        }
    };
    conformance::run(&open).await;
}

fn open(dir: &tempfile::TempDir) -> Ledger {
    Ledger::open(&dir.path().join("ledger.db")).unwrap()
}

fn to(upstream: &str) -> PlannedTarget {
    PlannedTarget {
        upstream: upstream.into(),
        settled: None,
    }
}

async fn begin(ledger: &Ledger, campaign: &str, code: &str, targets: &[&str]) -> Begin {
    let body = json!({ "code": code, "campaign": campaign, "discount": { "percent_off": 20 } });
    let def = Definition::of(&body, Some(campaign), code);
    let targets = targets.iter().map(|t| to(t)).collect();
    ledger
        .begin_create(NewCreate {
            key: None,
            body,
            definition: def,
            targets,
            requested_by: None,
            now: Utc::now(),
            key_window: chrono::Duration::hours(1),
        })
        .await
        .unwrap()
}

fn count(ledger: &Ledger, table: &str) -> i64 {
    ledger
        .lock()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn another_campaigns_pending_code_at_a_target_is_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    assert!(matches!(
        begin(&ledger, "a", "SPRING20", &["loop"]).await,
        Begin::New { .. }
    ));
    let (codes, requests) = (count(&ledger, "codes"), count(&ledger, "requests"));
    match begin(&ledger, "b", "spring20", &["loop2", "loop"]).await {
        Begin::Conflict(conflict) => assert_eq!(
            conflict,
            CodeConflict::OtherCampaign {
                held_by: vec![Holder {
                    campaign: Some("a".into()),
                    code: "SPRING20".into(),
                    upstreams: vec!["loop".into()],
                }]
            }
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!((count(&ledger, "codes"), count(&ledger, "requests")), (codes, requests));
    // Elsewhere, it is b's to claim.
    match begin(&ledger, "b", "spring20", &["loop2"]).await {
        Begin::New { claims, .. } => assert!(matches!(claims[..], [Claim::Send])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_version_1_ledger_gains_the_code_key_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let conn = Connection::open(&path).unwrap();
        let Migration::Sql(first) = MIGRATIONS[0] else {
            unreachable!("the first migration is SQL")
        };
        conn.execute_batch(first).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    let conn = ledger.lock();
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len());
    let indexed: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'codes_by_key')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(indexed);
}

/// A job's counts as the tally's trigger must keep them: by a join over the job's codes.
fn counted_by_join(ledger: &Ledger, job: i64, targets: &[&str]) -> BTreeMap<String, BTreeMap<Status, u64>> {
    let conn = ledger.lock();
    let mut out = BTreeMap::new();
    for t in targets {
        let mut stmt = conn
            .prepare(
                "SELECT d.status, COUNT(*) FROM job_items i
                   JOIN deliveries d ON d.code_id = i.code_id AND d.upstream = ?2
                  WHERE i.job_id = ?1 GROUP BY d.status",
            )
            .unwrap();
        let counts = stmt
            .query_map(params![job, t], |r| {
                Ok((parse_status(&r.get::<_, String>(0)?), r.get::<_, i64>(1)? as u64))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        out.insert(t.to_string(), counts);
    }
    out
}

async fn job_of(ledger: &Ledger, campaign: &str, targets: &[&str], codes: &[&str]) -> i64 {
    let items: Vec<Definition> = codes
        .iter()
        .map(|code| {
            let body = json!({ "code": code, "campaign": campaign, "discount": { "percent_off": 20 } });
            Definition::of(&body, Some(campaign), code)
        })
        .collect();
    let job = ledger
        .begin_job(NewJob {
            operation: crate::domain::request::OpKind::Create,
            campaign: campaign.into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            source: "json".into(),
            options: json!({}),
        })
        .await
        .unwrap();
    let staged = ledger.stage(job, items, StageAs::Given).await.unwrap();
    assert!(staged.iter().all(|s| *s == Staged::Accepted), "{staged:?}");
    ledger.commit_job(job).await.unwrap();
    job
}

async fn settle(ledger: &Ledger, job: i64, upstream: &str, statuses: &[Status]) {
    let work = ledger.job_work(job, upstream.into(), 0, 100).await.unwrap();
    let outcomes = work
        .iter()
        .zip(statuses)
        .map(|(w, s)| (w.code_id, TargetResult::new(upstream, None, *s)))
        .collect();
    ledger.record(OpKind::Create, outcomes).await.unwrap();
}

#[tokio::test]
async fn a_jobs_tally_follows_every_change_of_its_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    // One code is already on `a` before the job; a create claims another on `b`.
    let Begin::New { code_id, .. } = begin(&ledger, "c", "HELD", &["a"]).await else {
        panic!("a new code")
    };
    ledger
        .record(
            OpKind::Create,
            vec![(code_id, TargetResult::new("a", None, Status::Created))],
        )
        .await
        .unwrap();
    let Begin::New { code_id: busy, .. } = begin(&ledger, "c", "BUSY", &["b"]).await else {
        panic!("a new code")
    };
    let job = job_of(&ledger, "c", &["a", "b"], &["HELD", "BUSY", "N1", "N2", "N3", "N4"]).await;
    let check = |what: &str| {
        let ledger = ledger.clone();
        let what = what.to_owned();
        async move {
            let tally = ledger.job_counts(job).await.unwrap();
            assert_eq!(tally, counted_by_join(&ledger, job, &["a", "b"]), "{what}");
            tally
        }
    };
    let start = check("intake").await;
    assert_eq!(start["a"][&Status::Created], 1);
    assert_eq!(start["a"][&Status::Pending], 5);
    assert_eq!(start["b"][&Status::Pending], 6);

    settle(&ledger, job, "a", &[Status::Created, Status::Failed, Status::Throttled]).await;
    check("some settled on a").await;
    // The create's own delivery of BUSY on b ends outside the job and moves the job's count.
    ledger
        .record(
            OpKind::Create,
            vec![(busy, TargetResult::new("b", None, Status::Created))],
        )
        .await
        .unwrap();
    check("another caller's delivery settled").await;
    ledger.end_job(job, JobState::Cancelled).await.unwrap();
    let cancelled = check("cancelled").await;
    assert!(cancelled["b"][&Status::Cancelled] > 0);
    // A second job shares codes with the first: both tallies move on one record.
    let second = job_of(&ledger, "c", &["a"], &["N3", "N4"]).await;
    ledger.retry_job(job).await.unwrap();
    check("retried").await;
    settle(&ledger, second, "a", &[Status::Created, Status::Rejected]).await;
    check("the second job's deliveries").await;
    assert_eq!(
        ledger.job_counts(second).await.unwrap(),
        counted_by_join(&ledger, second, &["a"])
    );
    settle(&ledger, job, "b", &[Status::Created; 6]).await;
    let end = check("all of b").await;
    assert_eq!(end["b"].get(&Status::Pending), None);
}

#[tokio::test]
async fn a_version_2_ledgers_jobs_are_tallied_by_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let job = {
        let ledger = Ledger::open(&path).unwrap();
        let job = job_of(&ledger, "c", &["a", "b"], &["N1", "N2", "N3"]).await;
        settle(&ledger, job, "a", &[Status::Created, Status::Failed]).await;
        // Back to version 2, as a ledger written before the tally.
        ledger
            .lock()
            .execute_batch(concat!(
                "DROP TABLE job_stage; DROP TRIGGER deliveries_tally; DROP TABLE job_tally; PRAGMA user_version = 2;",
                " ALTER TABLE requests DROP COLUMN owner; ALTER TABLE requests DROP COLUMN lease_until; ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until;",
                " ALTER TABLE requests DROP COLUMN operation; ALTER TABLE requests DROP COLUMN requested_by; ALTER TABLE codes DROP COLUMN revoked_at; DROP TABLE revocations;",
                " DROP TABLE revoke_tally; ALTER TABLE jobs DROP COLUMN operation;"
            ))
            .unwrap();
        job
    };
    let ledger = Ledger::open(&path).unwrap();
    let counts = ledger.job_counts(job).await.unwrap();
    assert_eq!(counts, counted_by_join(&ledger, job, &["a", "b"]));
    assert_eq!(counts["a"][&Status::Failed], 1);
    assert_eq!(counts["b"][&Status::Pending], 3);
}

/// A version 3 ledger keyed codes by upper case. Migration 4 rekeys every code by NFKC and
/// case folding; of two codes of one campaign that now fold alike, the earlier answers for
/// the key and the later keeps a key of its own, so the migration cannot fail on them.
#[tokio::test]
async fn a_version_3_ledger_is_rekeyed_by_nfkc_and_case_folding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let ledger = Ledger::open(&path).unwrap();
        let conn = ledger.lock();
        for (campaign, code) in [
            ("a", "KEY"),
            ("a", "\u{212A}EY"),
            ("b", "Stra\u{DF}e"),
            ("b", "ＳＰＲＩＮＧ"),
        ] {
            conn.execute(
                "INSERT INTO codes (campaign, code, code_key, definition) VALUES (?1, ?2, ?3, '{}')",
                params![campaign, code, code.to_uppercase()],
            )
            .unwrap();
        }
        // What a version 3 ledger lacks: the later migrations' tables.
        conn.execute_batch(concat!(
            "DROP TABLE job_stage;",
            " ALTER TABLE requests DROP COLUMN owner; ALTER TABLE requests DROP COLUMN lease_until; ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until;",
            " ALTER TABLE requests DROP COLUMN operation; ALTER TABLE requests DROP COLUMN requested_by; ALTER TABLE codes DROP COLUMN revoked_at; DROP TABLE revocations;",
                " DROP TABLE revoke_tally; ALTER TABLE jobs DROP COLUMN operation;"
        ))
        .unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    let keys: Vec<(String, String)> = {
        let conn = ledger.lock();
        let mut stmt = conn.prepare("SELECT code, code_key FROM codes ORDER BY id").unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(
        keys,
        [
            ("KEY".to_owned(), "key".to_owned()),
            ("\u{212A}EY".to_owned(), "key\u{0}2".to_owned()),
            ("Stra\u{DF}e".to_owned(), "strasse".to_owned()),
            ("ＳＰＲＩＮＧ".to_owned(), "spring".to_owned()),
        ]
    );
    // A request for either spelling meets the code that answers for the key (no vendor
    // holds it yet, so it is redefined in place): no second row appears.
    assert!(matches!(
        begin(&ledger, "a", "\u{212A}ey", &["loop"]).await,
        Begin::New { .. }
    ));
    let first: String = ledger
        .lock()
        .query_row("SELECT code FROM codes WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(first, "\u{212A}ey");
    assert_eq!(count(&ledger, "codes"), 4);
}

/// A stop during intake leaves no half job: a job still staging (never accepted) is gone
/// at the next start with its staged codes, and one accepted and promoting is finished.
#[test]
fn a_job_cut_short_in_its_intake_is_removed_or_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let stage = |ledger: &Ledger, state: &str, codes: &[&str]| -> i64 {
        let conn = ledger.lock();
        conn.execute(
            "INSERT INTO jobs (state, campaign, targets, source, options, total) VALUES (?1, 'c', '[\"a\"]', 'json', '{}', 0)",
            [state],
        )
        .unwrap();
        let job = conn.last_insert_rowid();
        for (i, code) in codes.iter().enumerate() {
            let body = json!({ "code": code, "campaign": "c", "discount": { "percent_off": 20 } });
            stage_row(&conn, job, i as i64 + 1, &Definition::of(&body, Some("c"), code)).unwrap();
        }
        job
    };
    let (staging, promoting) = {
        let ledger = Ledger::open(&path).unwrap();
        // Accepted (every code staged and checked), not yet promoted when the stop came.
        let promoting = stage(&ledger, "promoting", &["P1", "P2", "P3"]);
        let staging = stage(&ledger, "staging", &["S1", "S2"]);
        (staging, promoting)
    };
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(count(&ledger, "job_stage"), 0);
    let adopted = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ledger.adopt(Utc::now()))
        .unwrap();
    assert_eq!(adopted.jobs, vec![promoting]);
    let exists: bool = ledger
        .lock()
        .query_row("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)", [staging], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!exists, "the job never accepted is gone");
    let codes: Vec<String> = ledger
        .lock()
        .prepare("SELECT code FROM codes ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(codes, ["P1", "P2", "P3"]);
    let job = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ledger.job(promoting))
        .unwrap()
        .unwrap();
    assert_eq!((job.state, job.total), (JobState::Running, 3));
}

/// While a job's intake runs, its staged codes are reserved: a create of one in another
/// campaign at the job's target, or in another case, is a conflict, as it would be once the
/// job holds it; the same code as staged, or at another target, goes ahead.
#[tokio::test]
async fn a_code_staged_by_a_job_is_reserved_against_clashing_creates() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    {
        let conn = ledger.lock();
        conn.execute(
            "INSERT INTO jobs (state, campaign, targets, source, options, total) VALUES ('staging', 'a', '[\"loop\"]', 'json', '{}', 0)",
            [],
        )
        .unwrap();
        let body = json!({ "code": "STAGED", "campaign": "a", "discount": { "percent_off": 20 } });
        stage_row(
            &conn,
            conn.last_insert_rowid(),
            1,
            &Definition::of(&body, Some("a"), "STAGED"),
        )
        .unwrap();
    }
    match begin(&ledger, "b", "staged", &["loop"]).await {
        Begin::Conflict(CodeConflict::OtherCampaign { held_by }) => {
            assert_eq!(held_by[0].campaign.as_deref(), Some("a"));
            assert_eq!(held_by[0].upstreams, ["loop"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        begin(&ledger, "a", "Staged", &["loop"]).await,
        Begin::Conflict(CodeConflict::OtherCase { .. })
    ));
    assert!(matches!(
        begin(&ledger, "b", "STAGED", &["loop2"]).await,
        Begin::New { .. }
    ));
    assert!(matches!(
        begin(&ledger, "a", "STAGED", &["loop"]).await,
        Begin::New { .. }
    ));
}

/// A create's claim as `begin` makes it, answered with the store's result rather than unwrapped.
/// Its 8 KB description takes pages of its own, so a file that cannot grow has no room for it.
async fn try_begin(ledger: &Ledger, code: &str) -> Result<Begin, crate::ports::StoreError> {
    let body = json!({
        "code": code,
        "campaign": "spring",
        "discount": { "percent_off": 20 },
        "description": "x".repeat(8000),
    });
    ledger
        .begin_create(NewCreate {
            key: None,
            definition: Definition::of(&body, Some("spring"), code),
            body,
            targets: vec![to("loop")],
            requested_by: None,
            now: Utc::now(),
            key_window: chrono::Duration::hours(1),
        })
        .await
}

/// Starts `n` creates at once while the test holds the ledger, so that they queue behind the
/// writer; returns their answers once the ledger is let go.
// Holding the ledger across the waits is the point: the creates run on the other threads.
#[allow(clippy::await_holding_lock)]
async fn creates_queued_behind_the_writer(
    ledger: &Ledger,
    n: usize,
    while_held: impl FnOnce(&Connection),
) -> Vec<Result<Begin, crate::ports::StoreError>> {
    let held = ledger.lock();
    let creates: Vec<_> = (0..n)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { try_begin(&ledger, &format!("GROUP-{i:03}")).await })
        })
        .collect();
    // Every create has queued (the first batch waits for the ledger, the rest behind it).
    while ledger.write_stats().writes + queued(ledger) < n as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    while_held(&held);
    drop(held);
    let mut answers = Vec::new();
    for create in creates {
        answers.push(create.await.unwrap());
    }
    answers
}

fn queued(ledger: &Ledger) -> u64 {
    ledger.writer.queued() as u64
}

/// Group commit: creates that arrive while the writer is busy are committed together, in fewer
/// transactions than creates, and each is answered with its own claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_commit_in_fewer_transactions_than_creates() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    let answers = creates_queued_behind_the_writer(&ledger, 40, |_| {}).await;
    for answer in &answers {
        assert!(
            matches!(answer, Ok(Begin::New { claims, .. }) if matches!(claims[..], [Claim::Send])),
            "{answer:?}"
        );
    }
    let stats = ledger.write_stats();
    assert_eq!(stats.writes, 40, "{stats:?}");
    assert!(
        stats.transactions <= 2,
        "40 creates in {} transactions: {stats:?}",
        stats.transactions
    );
    assert!(stats.largest_batch >= 39, "{stats:?}");
    assert_eq!(
        (
            count(&ledger, "codes"),
            count(&ledger, "requests"),
            count(&ledger, "deliveries")
        ),
        (40, 40, 40)
    );
}

/// A create that finds the writer idle is written at once, alone: no batch is waited for.
#[tokio::test]
async fn a_lone_create_commits_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    for i in 0..3 {
        assert!(matches!(
            try_begin(&ledger, &format!("ALONE-{i}")).await,
            Ok(Begin::New { .. })
        ));
        let stats = ledger.write_stats();
        let n = i + 1;
        assert_eq!(
            (stats.writes, stats.batches, stats.transactions, stats.largest_batch),
            (n, n, n, 1)
        );
    }
}

/// A batch whose commit the file refuses (here: full, by `max_page_count`) fails every create
/// in it with the ledger-unavailable answer, and none of it is written; once there is room the
/// next creates go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_every_create_in_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    let before = (
        count(&ledger, "codes"),
        count(&ledger, "requests"),
        count(&ledger, "deliveries"),
    );
    let answers = creates_queued_behind_the_writer(&ledger, 30, |conn| {
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
    })
    .await;
    for answer in &answers {
        match answer {
            Err(e) => {
                assert_eq!(e.kind, crate::ports::StoreErrorKind::Unavailable, "{e}");
                assert!(e.message.contains("full"), "{e}");
            }
            Ok(begun) => panic!("a create in a failed batch was answered {begun:?}"),
        }
    }
    let stats = ledger.write_stats();
    assert_eq!((stats.writes, stats.transactions), (30, 0), "{stats:?}");
    assert!(stats.largest_batch >= 29, "{stats:?}");
    assert_eq!(
        (
            count(&ledger, "codes"),
            count(&ledger, "requests"),
            count(&ledger, "deliveries")
        ),
        before,
        "a failed batch left rows behind"
    );
    ledger.lock().pragma_update(None, "max_page_count", 1_000_000).unwrap();
    assert!(matches!(try_begin(&ledger, "AFTER").await, Ok(Begin::New { .. })));
}

/// A second process holding the file's write lock (the CLI beside a server) does not hold the
/// runtime's thread: on a runtime of one thread, a create waits for the lock on the blocking
/// pool while the runtime goes on, and is written once the other process lets go. Written on
/// the runtime's thread, it would have blocked that thread in SQLite's busy timeout, so the
/// lock could never have been let go in time and the create would have failed "locked".
#[tokio::test(flavor = "current_thread")]
async fn a_create_behind_another_process_s_lock_does_not_hold_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    let other = Connection::open(dir.path().join("ledger.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let create = tokio::spawn({
        let ledger = ledger.clone();
        async move { try_begin(&ledger, "BEHIND-A-LOCK").await }
    });
    // Each yield lets the create's task run; it must come back to this one each time.
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !create.is_finished(),
        "the create did not wait for the other process's lock"
    );
    // (Asked through the other connection: the ledger's own is the waiting writer's.)
    let codes: i64 = other.query_row("SELECT COUNT(*) FROM codes", [], |r| r.get(0)).unwrap();
    assert_eq!(codes, 0);
    other.execute_batch("COMMIT").unwrap();
    let begun = create.await.unwrap();
    assert!(matches!(begun, Ok(Begin::New { .. })), "{begun:?}");
    assert_eq!(count(&ledger, "codes"), 1);
    let stats = ledger.write_stats();
    assert_eq!((stats.writes, stats.transactions), (1, 1), "{stats:?}");
}
