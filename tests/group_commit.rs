//! Group commit through the real router: creates that reach the ledger while its writer is busy
//! are committed together, in fewer transactions than creates, and a lone create is written at
//! once, alone. `/metrics` counts the ledger's writes, batches and transactions; the vendor
//! (wiremock) checks every call as Loop's document requires and takes each code exactly once.
//!
//! A second connection on the ledger file holding its write lock (as the CLI beside a server
//! may, briefly) is what makes the writer busy on cue here; the store's own tests
//! (`store::sqlite::tests`) show the same, and a batch that fails, on the store alone.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

const TOKEN: &str = "loop-group-commit-token-5c1e";

/// A gateway on the real router with one Loop upstream at `vendor`; its ledger file's path.
async fn gateway(vendor: &str, dir: &tempfile::TempDir) -> (common::Gateway, std::path::PathBuf) {
    let config = format!(
        "[ledger]\npath = \"ledger.db\"\n\n{}",
        common::upstream("loop", "loop", vendor, "")
    );
    let path = common::write_files(dir.path(), &config, &[("spring", "[upstreams.loop]\n")]);
    let env: HashMap<String, String> = [("LOOP_TOKEN".to_owned(), TOKEN.to_owned())].into();
    let (_, router) = promo_gateway::app_from_file(&path, &move |k: &str| env.get(k).cloned()).unwrap();
    (common::serve(router).await, dir.path().join("ledger.db"))
}

fn body(code: &str) -> Value {
    json!({ "code": code, "campaign": "spring", "targets": ["loop"], "discount": { "percent_off": 20 } })
}

/// The ledger's counters from `/metrics`: writes, batches, transactions, largest batch.
async fn ledger_counters(gw: &common::Gateway) -> [u64; 4] {
    let raw = gw.get_raw("/metrics").await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    let read = |name: &str| -> u64 {
        let line = raw
            .text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{backend=\"sqlite\"}} ")))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", raw.text));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    [
        read("promo_gateway_ledger_writes_total"),
        read("promo_gateway_ledger_batches_total"),
        read("promo_gateway_ledger_transactions_total"),
        read("promo_gateway_ledger_largest_batch"),
    ]
}

/// Holds the ledger file's write lock from a connection of the test's own until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(path: &std::path::Path) -> Self {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        self.0.execute_batch("COMMIT").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_that_meet_a_busy_writer_are_committed_together() {
    const N: usize = 24;
    let vendor = common::strict_server().await;
    let codes: Vec<String> = (0..N).map(|i| format!("GROUP{i:02}")).collect();
    for code in &codes {
        // Answered after 600 ms: long enough for the test to hold the ledger again before
        // the answers come back, so that their outcomes queue too.
        common::loop_create(TOKEN, common::loop_body(code))
            .respond_with(common::loop_created(&format!("promo_{code}"), code).set_delay(Duration::from_millis(600)))
            .expect(1)
            .mount(&vendor)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (gw, ledger) = gateway(&vendor.uri(), &dir).await;
    let before = ledger_counters(&gw).await;

    // The claims queue behind a writer that waits for the file's lock.
    let lock = WriteLock::take(&ledger);
    let creates = {
        let bodies: Vec<Value> = codes.iter().map(|c| body(c)).collect();
        let base = gw.base.clone();
        tokio::spawn(async move { common::Gateway::at(base).create_all(&bodies).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        common::received(&vendor).await,
        0,
        "a call left before its claim was written"
    );
    drop(lock);
    // Every claim is written and every call made; the outcomes queue behind the lock again.
    common::wait_for_requests(&vendor, N).await;
    let lock = WriteLock::take(&ledger);
    tokio::time::sleep(Duration::from_millis(900)).await;
    drop(lock);

    for ((status, answer), code) in creates.await.unwrap().into_iter().zip(&codes) {
        assert_eq!(status, 201, "{code}: {answer}");
        assert_eq!(answer["results"][0]["status"], "created", "{code}: {answer}");
    }
    let after = ledger_counters(&gw).await;
    let [writes, batches, transactions] = [0, 1, 2].map(|i| after[i] - before[i]);
    println!(
        "{N} creates: {writes} ledger writes in {batches} batches, {transactions} transactions; largest batch {}",
        after[3]
    );
    // A claim and an outcome with the answer per create.
    assert_eq!(writes, 2 * N as u64, "{after:?}");
    assert!(
        transactions < N as u64 / 2,
        "{N} creates took {transactions} transactions in {batches} batches: not committed together"
    );
    assert!(after[3] >= (N as u64) / 2, "the largest batch took {} writes", after[3]);
    for code in &codes {
        let (status, record) = gw.get(&format!("/v1/promo-codes/{code}")).await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["deliveries"]["loop"]["status"], "created", "{code}: {record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_create_is_written_at_once_and_alone() {
    let vendor = common::strict_server().await;
    common::expect_loop_created(&vendor, TOKEN, "ALONE1", "promo_alone").await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = gateway(&vendor.uri(), &dir).await;
    let before = ledger_counters(&gw).await;
    let (status, answer) = gw.create(&body("ALONE1")).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["results"][0]["status"], "created", "{answer}");
    let after = ledger_counters(&gw).await;
    // Its claim and its answer, each a batch of one in a transaction of its own: nothing
    // waited for company.
    assert_eq!(
        [0, 1, 2].map(|i| after[i] - before[i]),
        [2, 2, 2],
        "before {before:?}, after {after:?}"
    );
    assert_eq!(after[3], 1, "{after:?}");
}
