//! The PostgreSQL store against a real server (`tests/common/postgres.rs` starts one): the
//! `Store` contract, each case on a database of its own, and what only a shared database has
//! to show (migrations applied once by replicas starting together).

use crate::domain::request::OpKind;
use std::sync::Arc;

use super::{Ledger, Options};
use crate::ports::Store;
use crate::store::conformance;

#[path = "../../../tests/common/postgres.rs"]
#[allow(dead_code)]
mod server;

fn options(owner: &str) -> Options {
    Options {
        owner: owner.into(),
        lease: conformance::LEASE,
        max_connections: 8,
    }
}

/// Connects from inside the test's runtime, as the gateway's start-up does.
fn connect(url: &str, owner: &str) -> Arc<dyn Store> {
    let runtime = tokio::runtime::Handle::current();
    let ledger = tokio::task::block_in_place(|| runtime.block_on(Ledger::connect(url, options(owner))));
    Arc::new(ledger.expect("the test's PostgreSQL answers"))
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_keeps_the_store_contract() {
    let Some(pg) = server::Postgres::start_or_skip("postgres_keeps_the_store_contract") else {
        return;
    };
    let open = || {
        let url = pg.database();
        let store = connect(&url, "first");
        // The peer is another replica on the same database.
        let peer = move || connect(&url, "second");
        conformance::Opened {
            store,
            peer: Box::new(peer),
        }
    };
    conformance::run(&open).await;
}

/// Three replicas starting at once on an empty database: each migration is applied once (the
/// others wait on the advisory lock and find it applied), and every one of them opens.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_starting_together_migrate_once() {
    let Some(pg) = server::Postgres::start_or_skip("replicas_starting_together_migrate_once") else {
        return;
    };
    let url = pg.database();
    let starts = (0..3).map(|i| {
        let url = url.clone();
        tokio::spawn(async move { Ledger::connect(&url, options(&format!("replica-{i}"))).await })
    });
    for start in starts {
        start.await.unwrap().expect("every replica opens");
    }
    let name = url.rsplit('/').next().unwrap();
    let applied = pg.psql(
        name,
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM ledger_migrations",
    );
    let expected: Vec<String> = (1..=super::schema::MIGRATIONS.len()).map(|v| v.to_string()).collect();
    assert_eq!(applied, expected.join(","));
}

/// An unreachable database stops the start with the host, never the password.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_named_by_host_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://gateway:s3cret-pw@127.0.0.1:{port}/ledger");
    let message = match Ledger::connect(&url, options("x")).await {
        Ok(_) => panic!("nothing listens on {port}"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
}

/// `n` codes claimed for `loop`, each `pending` there; their ids.
async fn pending_codes(store: &Ledger, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(claim(store, &format!("BATCH-{i:03}"), chrono::Utc::now()).await);
    }
    ids
}

/// A create of `code` for `loop` claimed at `now` (the caller's clock); its code's id.
async fn claim(store: &Ledger, code: &str, now: chrono::DateTime<chrono::Utc>) -> i64 {
    let begun = begin_keyed(store, code, None, now).await;
    let crate::domain::request::Begin::New { code_id, .. } = begun else {
        panic!("{begun:?}")
    };
    code_id
}

/// A create of `code` for `loop` at `now` (the caller's clock), with an idempotency key (if
/// any) good for an hour.
async fn begin_keyed(
    store: &Ledger,
    code: &str,
    key: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::domain::request::Begin {
    use crate::domain::code::Definition;
    use crate::domain::request::{NewCreate, PlannedTarget};
    let body = serde_json::json!({ "code": code, "campaign": "spring", "discount": { "percent_off": 20 } });
    store
        .begin_create(NewCreate {
            key: key.map(str::to_owned),
            definition: Definition::of(&body, Some("spring"), code),
            body,
            targets: vec![PlannedTarget {
                upstream: "loop".into(),
                settled: None,
            }],
            requested_by: None,
            now,
            key_window: chrono::Duration::hours(1),
        })
        .await
        .unwrap()
}

fn created(code_id: i64) -> Vec<(i64, crate::domain::delivery::TargetResult)> {
    use crate::domain::delivery::{Status, TargetResult};
    vec![(code_id, TargetResult::new("loop", None, Status::Created))]
}

/// Records code `id` as created, on a task of its own (so that the writes queue together).
fn record_later(store: &Ledger, id: i64) -> tokio::task::JoinHandle<Result<(), crate::ports::StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.record(OpKind::Create, created(id)).await })
}

/// A connection of the test's own that holds the rows of `code_ids` locked until it commits.
async fn lock_rows(url: &str, code_ids: &[i64]) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT 1 FROM deliveries WHERE code_id = ANY($1) FOR UPDATE",
            &[&code_ids],
        )
        .await
        .unwrap();
    client
}

/// A connection outside any transaction, to watch the others: a session in a transaction sees
/// `pg_stat_activity` as it was at its first look, for the rest of the transaction.
async fn monitor(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Waits until the ledger's writer is blocked on a row lock; its backend's pid.
async fn writer_waiting(monitor: &tokio_postgres::Client) -> i32 {
    for _ in 0..500 {
        let row = monitor
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                  WHERE application_name = 'promo-gateway' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the ledger's writer never waited on the test's lock");
}

/// Group commit on PostgreSQL: outcomes that queue while the writer is busy are committed
/// together, in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_that_meet_a_busy_writer_commit_together() {
    let Some(pg) = server::Postgres::start_or_skip("outcomes_that_meet_a_busy_writer_commit_together") else {
        return;
    };
    let url = pg.database();
    let store = Ledger::connect(&url, options("first")).await.unwrap();
    let ids = pending_codes(&store, 30).await;
    let test = lock_rows(&url, &ids[..1]).await;
    let first = record_later(&store, ids[0]);
    writer_waiting(&monitor(&url).await).await;
    let rest: Vec<_> = ids[1..].iter().map(|&id| record_later(&store, id)).collect();
    while store.writer.queued() < rest.len() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    test.batch_execute("COMMIT").await.unwrap();
    first.await.unwrap().unwrap();
    for r in rest {
        r.await.unwrap().unwrap();
    }
    let stats = store.write_stats();
    assert_eq!(
        (stats.writes, stats.batches, stats.transactions),
        (30, 2, 2),
        "{stats:?}"
    );
    assert_eq!(stats.largest_batch, 29, "{stats:?}");
    for id in ids {
        let results = store
            .target_results(OpKind::Create, id, vec!["loop".into()])
            .await
            .unwrap();
        assert_eq!(results[0].status, crate::domain::delivery::Status::Created, "{id}");
    }
}

/// A batch whose connection to the database is lost fails every write in it with the
/// ledger-unavailable answer, and none of it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_loses_the_database_fails_every_write_in_it() {
    let Some(pg) = server::Postgres::start_or_skip("a_batch_that_loses_the_database_fails_every_write_in_it") else {
        return;
    };
    let url = pg.database();
    let store = Ledger::connect(&url, options("first")).await.unwrap();
    let ids = pending_codes(&store, 20).await;
    // The first batch (one write) waits on code 0's row, the next (the other 19) on code 1's.
    let test = lock_rows(&url, &ids[..2]).await;
    let watch = monitor(&url).await;
    let first = record_later(&store, ids[0]);
    let pid = writer_waiting(&watch).await;
    let rest: Vec<_> = ids[1..].iter().map(|&id| record_later(&store, id)).collect();
    while store.writer.queued() < rest.len() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The database goes away under the first batch, then under the second (which may also
    // meet the first's dead connection and fail at once).
    watch.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
    let e = first.await.unwrap().unwrap_err();
    assert_eq!(e.kind, crate::ports::StoreErrorKind::Unavailable, "{e}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !rest.iter().all(|r| r.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the second batch neither failed nor waited on the test's lock"
        );
        watch
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'promo-gateway' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for r in rest {
        let e = r.await.unwrap().unwrap_err();
        assert_eq!(e.kind, crate::ports::StoreErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("PostgreSQL at"), "{e}");
    }
    test.batch_execute("COMMIT").await.unwrap();
    let stats = store.write_stats();
    assert_eq!(
        (stats.writes, stats.batches, stats.transactions),
        (20, 2, 0),
        "{stats:?}"
    );
    let name = url.rsplit('/').next().unwrap();
    let written = pg.psql(
        name,
        "SELECT count(*) FROM deliveries WHERE status <> 'pending' OR result IS NOT NULL",
    );
    assert_eq!(written, "0", "a failed batch left outcomes written");
}

/// Leases are kept on the database's clock, so a replica whose clock is wrong neither adopts
/// work whose owner is alive (its clock ahead) nor writes leases that run out early for the
/// others (its clock behind). Each replica passes its own clock's time, as the gateway does.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_with_a_wrong_clock_adopts_no_live_work() {
    let Some(pg) = server::Postgres::start_or_skip("a_replica_with_a_wrong_clock_adopts_no_live_work") else {
        return;
    };
    let url = pg.database();
    let open = |owner: &str, clock_error: chrono::Duration| {
        let mut ledger = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(Ledger::connect(&url, options(owner)))
        })
        .unwrap();
        ledger.clock_error = clock_error;
        ledger
    };
    // Two hours off: more than a lease, and more than the keys' hour.
    let right = open("right", chrono::Duration::zero());
    let ahead = open("ahead", chrono::Duration::hours(2));
    let behind = open("behind", -chrono::Duration::hours(2));
    let clock = |ledger: &Ledger| chrono::Utc::now() + ledger.clock_error;

    // A live create of a replica whose clock is right is not adopted by one whose clock runs
    // ahead, on whose clock its lease ran out long ago.
    claim(&right, "LIVE-1", clock(&right)).await;
    let adopted = ahead.adopt(clock(&ahead)).await.unwrap();
    assert!(adopted.creates.is_empty(), "{adopted:?}");
    // Nor is a live create of the replica whose clock runs behind (its lease, on its own clock,
    // ran out long before it was written) adopted by the replica whose clock is right.
    claim(&behind, "LIVE-2", clock(&behind)).await;
    let adopted = right.adopt(clock(&right)).await.unwrap();
    assert!(adopted.creates.is_empty(), "{adopted:?}");
    // Once the leases have run out on the database's clock (time moved by a lease and more on
    // each replica's own clock), they are adopted, once each.
    let later = |ledger: &Ledger| clock(ledger) + conformance::LEASE * 2;
    let adopted = ahead.adopt(later(&ahead)).await.unwrap();
    assert_eq!(adopted.creates.len(), 2, "{adopted:?}");
    let again = right.adopt(later(&right)).await.unwrap();
    assert!(again.creates.is_empty(), "{again:?}");

    // An idempotency key's hour runs on the database's clock too: the same key sent again at
    // once is the create in flight, whichever replica's clock wrote it or reads it.
    use crate::domain::request::Begin;
    for (first, again, code) in [(&right, &ahead, "KEYED-1"), (&behind, &right, "KEYED-2")] {
        let key = format!("key-{code}");
        let begun = begin_keyed(first, code, Some(&key), clock(first)).await;
        assert!(matches!(begun, Begin::New { .. }), "{begun:?}");
        let repeated = begin_keyed(again, code, Some(&key), clock(again)).await;
        assert!(matches!(repeated, Begin::InProgress(_)), "{repeated:?}");
    }
}
