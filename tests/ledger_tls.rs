//! The PostgreSQL ledger over TLS, with libpq's URL parameters, against a real server started
//! with `ssl=on` and a certificate this test issues (rcgen): the real binary serves on it with
//! `sslmode=verify-full`, every one of its connections is encrypted (`pg_stat_ssl`), and each
//! thing that must not verify stops start-up or `check-config` naming the variable, the host and
//! the TLS reason, never the URL's password.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::binary::{Binary, BIN};
use common::postgres::Postgres;
use common::tls::{ca, pki};
use serde_json::json;

const DB_VAR: &str = "PROMO_TLS_TEST_LEDGER_URL";
const TOKEN_VAR: &str = "PROMO_TLS_TEST_LOOP_TOKEN";
/// Trust authentication ignores it; it is in the URL to show it never reaches a message.
const PASSWORD: &str = "ledger-password-6c1e";

/// A config folder: the ledger from `DB_VAR`, Loop at `vendor`.
fn project(vendor: &str) -> tempfile::TempDir {
    project_with(vendor, 30, "")
}

/// The same with a lease of `lease_seconds` and more lines for Loop's table.
fn project_with(vendor: &str, lease_seconds: u32, loop_extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ledger]\nurl_env = \"{DB_VAR}\"\nlease_seconds = {lease_seconds}\n\n{}",
        common::upstream(
            "loop",
            "loop",
            vendor,
            &format!("auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}\n{loop_extra}")
        )
    );
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/tls.toml"), "[upstreams.loop]\n").unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

fn command(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(args)
        .env(DB_VAR, url)
        .env(TOKEN_VAR, "loop-tls-token")
        .stdin(Stdio::null());
    cmd
}

/// `check-config`'s exit status and what it printed.
fn check(dir: &Path, url: &str) -> (Option<i32>, String) {
    let out = command(dir, url, &["check-config"]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(PASSWORD), "the password was shown: {text}");
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_speaks_tls_as_libpq_urls_ask_and_refuses_what_does_not_verify() {
    let Some(_) = Postgres::start_or_skip("the_ledger_speaks_tls") else {
        return;
    };
    let pki = pki();
    let pg = Postgres::start_tls(&pki.cert_pem, &pki.key_pem);
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let other_ca = files.path().join("other-ca.pem");
    let (params, key) = ca("another CA");
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();

    let loop_vendor = common::strict_server().await;
    common::expect_loop_created(&loop_vendor, "loop-tls-token", "TLS-1", "promo_tls_1").await;
    let dir = project(&loop_vendor.uri());
    let db = pg.database();
    let name = db.rsplit('/').next().unwrap().to_owned();
    let url = |host: &str, query: &str| format!("postgres://postgres:{PASSWORD}@{host}:{}/{name}?{query}", pg.port);
    let full = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );

    // Served with verify-full: a create and its idempotent replay, over TLS.
    let gw = Binary::spawn(
        command(dir.path(), &full, &["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()),
        false,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|b| panic!("no `listening on` line: {:?}", b.lines.lock().unwrap()));
    let body = json!({ "code": "TLS-1", "campaign": "tls", "discount": { "percent_off": 20 } });
    let (status, _, first) = gw.create_with_key("tls-key-1", &body).await;
    assert_eq!(status, 201, "{first}\n{}", gw.log());
    let (status, replayed, again) = gw.create_with_key("tls-key-1", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")), "{again}");
    assert_eq!(again, first);
    // Every connection the gateway holds is encrypted.
    let connections = pg.psql(
        "postgres",
        "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'promo-gateway'",
    );
    let (all, encrypted) = connections.split_once(' ').unwrap();
    assert!(all.parse::<u32>().unwrap() > 0, "{connections}");
    assert_eq!(all, encrypted, "connections in clear text: {connections}");
    // /health and /metrics say so.
    let (_, health) = gw.get("/health").await;
    assert_eq!(health["ledger"]["tls"], true, "{health}");
    assert!(
        health["ledger"]["tls_version"].as_str().unwrap().starts_with("TLSv1."),
        "{health}"
    );
    let metrics = gw.get_raw("/metrics").await.text;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("promo_gateway_ledger_tls{backend=\"postgres\",version=\"TLSv1.") && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    drop(gw);

    // What verifies: verify-full by name, verify-ca by chain only (127.0.0.1 is not the
    // certificate's name), require without a root (encrypted, unchecked, as libpq).
    for ok in [
        full.clone(),
        url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={}", ca_file.display()),
        ),
        url("127.0.0.1", "sslmode=require"),
    ] {
        let (code, text) = check(dir.path(), &ok);
        assert_eq!(code, Some(0), "{ok}: {text}");
        assert!(
            text.contains("answers") && text.ends_with("ok: no problems\n"),
            "{text}"
        );
    }
    // What does not, each named.
    let missing = files.path().join("nowhere.pem");
    let refusals = [
        (
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
            ),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
            ),
            "UnknownIssuer",
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
            ),
            "sslrootcert",
        ),
        (
            url("localhost", "sslmode=verify-everything"),
            "sslmode `verify-everything`",
        ),
    ];
    for (bad, reason) in &refusals {
        let (code, text) = check(dir.path(), bad);
        assert_eq!(code, Some(1), "{bad}: {text}");
        assert!(text.ends_with("1 problem(s)\n"), "{text}");
        assert!(text.contains(DB_VAR) && text.contains(reason), "{bad}: {text}");
    }
    // The same refusal stops start-up.
    let out = command(dir.path(), &refusals[0].0, &["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(DB_VAR)
            && stderr.contains(&format!("127.0.0.1:{}", pg.port))
            && stderr.contains("not valid for name"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    // sslmode=require against a server without TLS.
    let plain = Postgres::start();
    let plain_url = format!("{}?sslmode=require", plain.url("postgres"));
    let (code, text) = check(dir.path(), &plain_url);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(DB_VAR) && text.to_lowercase().contains("tls"), "{text}");
}

/// A certificate that stops verifying while the gateway serves (the server's is replaced by one
/// of a CA the gateway does not trust): the ledger is a backend gone. A create is answered 503
/// with nothing sent to the vendor, `/health` is degraded naming the TLS reason, and nothing
/// panics; the gateway recovers once the trusted certificate is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_stops_verifying_while_serving_is_a_ledger_gone() {
    let Some(_) = Postgres::start_or_skip("a_certificate_that_stops_verifying_while_serving") else {
        return;
    };
    let trusted = pki();
    let mut pg = Postgres::start_tls(&trusted.cert_pem, &trusted.key_pem);
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, &trusted.ca_pem).unwrap();
    let db = pg.database();
    let name = db.rsplit('/').next().unwrap().to_owned();
    let url = format!(
        "postgres://postgres:{PASSWORD}@localhost:{}/{name}?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca_file.display()
    );
    let vendor = common::strict_server().await;
    common::expect_loop_created(&vendor, "loop-tls-token", "ROTATE-1", "promo_rotate_1").await;
    let dir = project(&vendor.uri());
    let gw = Binary::spawn(
        command(dir.path(), &url, &["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()),
        false,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|b| panic!("no `listening on` line: {:?}", b.lines.lock().unwrap()));
    let code = |c: &str| json!({ "code": c, "campaign": "tls", "discount": { "percent_off": 20 } });
    let (status, _, first) = gw.create_with_key("rotate-1", &code("ROTATE-1")).await;
    assert_eq!(status, 201, "{first}\n{}", gw.log());

    // The server now presents a certificate of another CA; every connection is dropped.
    let untrusted = pki();
    pg.reissue(&untrusted.cert_pem, &untrusted.key_pem);
    let (status, _, refused) = gw.create_with_key("rotate-2", &code("ROTATE-2")).await;
    assert_eq!(status, 503, "{refused}\n{}", gw.log());
    let text = refused.to_string();
    assert!(
        text.contains("TLS handshake") && text.contains("invalid peer certificate"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    let sent: Vec<_> = vendor
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.body.windows(8).any(|w| w == b"ROTATE-2"))
        .collect();
    assert!(sent.is_empty(), "a code was sent while its claim could not be recorded");
    let (status, health) = gw.get("/health").await;
    assert_eq!(health["status"], "degraded", "{status} {health}");
    let problem = health["ledger"].to_string();
    assert!(problem.contains("invalid peer certificate"), "{health}");
    assert!(!problem.contains(PASSWORD), "{health}");

    // The trusted certificate back: the same request goes through.
    pg.reissue(&trusted.cert_pem, &trusted.key_pem);
    common::expect_loop_created(&vendor, "loop-tls-token", "ROTATE-2", "promo_rotate_2").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = gw.create_with_key("rotate-2", &code("ROTATE-2")).await;
        if status == 201 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not recovered: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

/// Two replicas on one ledger over `verify-full`: a sync job whose replica is killed is taken
/// over by the other once its lease runs out, and finished, every code created once or (in
/// flight at the kill) answered as already there.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_taken_over_between_replicas_over_tls() {
    let Some(_) = Postgres::start_or_skip("a_job_is_taken_over_between_replicas_over_tls") else {
        return;
    };
    let pki = pki();
    let pg = Postgres::start_tls(&pki.cert_pem, &pki.key_pem);
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let db = pg.database();
    let name = db.rsplit('/').next().unwrap().to_owned();
    let url = format!(
        "postgres://postgres:{PASSWORD}@localhost:{}/{name}?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca_file.display()
    );
    // Loop, slowly: each create answered after 50 ms, a code seen before answered 409.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let vendor = common::strict_server().await;
    let calls = seen.clone();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/admin/promos"))
        .respond_with(move |r: &wiremock::Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let code = body["code"].as_str().unwrap().to_owned();
            let mut calls = calls.lock().unwrap();
            let again = calls.contains(&code);
            calls.push(code.clone());
            let answer = if again {
                wiremock::ResponseTemplate::new(409)
                    .set_body_json(json!({ "error": "conflict", "message": "Promo code already exists" }))
            } else {
                wiremock::ResponseTemplate::new(201).set_body_json(common::loop_promo(&format!("promo_{code}"), &code))
            };
            answer.set_delay(Duration::from_millis(50))
        })
        .mount(&vendor)
        .await;
    let dirs: Vec<_> = (0..2)
        .map(|_| project_with(&vendor.uri(), 3, "max_in_flight = 2"))
        .collect();
    let spawn = |dir: &Path| {
        Binary::spawn(
            command(dir, &url, &["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()),
            false,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|b| panic!("no `listening on` line: {:?}", b.lines.lock().unwrap()))
    };
    let mut first = spawn(dirs[0].path());
    let second = spawn(dirs[1].path());
    let codes: Vec<String> = (0..60).map(|i| format!("TLSJOB-{i:02}")).collect();
    let job = json!({ "campaign": "tls", "template": { "discount": { "percent_off": 20 } }, "codes": codes });
    let (status, body) = first.post("/v1/sync-jobs", job.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "the job made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let done = common::jobs::wait_done_or(&second, id, Duration::from_secs(60), || second.log()).await;
    assert_eq!(done["state"], "done", "{done}");
    let delivered =
        common::jobs::count(&done, "loop", "created") + common::jobs::count(&done, "loop", "already_exists");
    assert_eq!(delivered, 60, "{done}");
    let calls = seen.lock().unwrap().clone();
    let mut per_code = std::collections::BTreeMap::<&str, usize>::new();
    for c in &calls {
        *per_code.entry(c).or_default() += 1;
    }
    assert_eq!(per_code.len(), 60, "every code reached the vendor");
    // Resent: at most what was in flight or answered and not yet recorded at the kill.
    assert!(
        per_code.values().all(|n| *n <= 2) && per_code.values().filter(|n| **n > 1).count() <= 32,
        "{per_code:?}"
    );
}
