//! The PostgreSQL store against a real server (`tests/common/postgres.rs` starts one): the
//! `Store` contract, each case on a database of its own, and what only a shared database has
//! to show (migrations applied once by replicas starting together).

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
