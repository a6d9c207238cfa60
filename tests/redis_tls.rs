//! The shared rate budget over TLS: a `rediss://` Redis (a real redis-server listening TLS only,
//! with a certificate this test issues) verified against `[rate_limit] redis_ca_file`, and each
//! thing that must not verify refused at start-up naming the variable and the TLS reason, never
//! the URL's password.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::redis::Redis;
use common::tls::ca;
use serde_json::json;

const REDIS_VAR: &str = "PROMO_TLS_TEST_REDIS_URL";
const PASSWORD: &str = "redis-password-5e2a";

/// Writes a CA, a server certificate for `localhost` it issued, and its key; their paths.
fn pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let pki = common::tls::pki();
    let paths = (dir.join("ca.pem"), dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&paths.0, pki.ca_pem).unwrap();
    std::fs::write(&paths.1, pki.cert_pem).unwrap();
    std::fs::write(&paths.2, pki.key_pem).unwrap();
    paths
}

/// A gateway whose budget is in the Redis at `url`, with `ca` as `redis_ca_file`.
fn open(
    vendor: &str,
    url: &str,
    ca: Option<&Path>,
) -> (tempfile::TempDir, Result<axum::Router, promo_gateway::StartupError>) {
    let dir = tempfile::tempdir().unwrap();
    let ca_line = ca.map_or(String::new(), |p| format!("redis_ca_file = \"{}\"\n", p.display()));
    let config = format!(
        "[rate_limit]\nredis_url_env = \"{REDIS_VAR}\"\n{ca_line}\n{}",
        common::upstream("loop", "loop", vendor, "")
    );
    let path = common::write_files(dir.path(), &config, &[("tls", "[upstreams.loop]\n")]);
    let env: HashMap<String, String> = [
        (REDIS_VAR.to_owned(), url.to_owned()),
        ("LOOP_TOKEN".to_owned(), "loop-token".to_owned()),
    ]
    .into();
    let app = promo_gateway::app_from_file(&path, &move |k: &str| env.get(k).cloned()).map(|(_, router)| router);
    (dir, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shared_budget_speaks_tls_and_refuses_what_does_not_verify() {
    let Some(_) = Redis::start_or_skip("the_shared_budget_speaks_tls") else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let (ca_file, cert, key) = pki(files.path());
    let redis = Redis::start_tls(&cert, &key, &ca_file, PASSWORD);
    let url = |host: &str| format!("rediss://:{PASSWORD}@{host}:{}", redis.port);
    let loop_vendor = common::strict_server().await;
    common::expect_loop_created(&loop_vendor, "loop-token", "TLS-R1", "promo_r1").await;

    // Verified against the CA file: a create draws on the budget in Redis, over TLS.
    let (_dir, app) = open(&loop_vendor.uri(), &url("localhost"), Some(&ca_file));
    let gw = common::serve(app.unwrap_or_else(|e| panic!("{e}"))).await;
    let (status, body) = gw
        .create(&json!({ "code": "TLS-R1", "campaign": "tls", "discount": { "percent_off": 20 } }))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, health) = gw.get("/health").await;
    assert_eq!(health["upstreams"]["loop"]["rate_limit_backend"], "redis", "{health}");
    assert_eq!(health["upstreams"]["loop"]["rate_limit_tls"], true, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let metrics = gw.get_raw("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("promo_gateway_rate_limit_tls{") && l.ends_with(" 1")),
        "{metrics}"
    );

    // What does not verify stops start-up, naming the variable and the reason.
    let other = files.path().join("other-ca.pem");
    let (params, key) = ca("another CA");
    std::fs::write(&other, params.self_signed(&key).unwrap().pem()).unwrap();
    let missing = files.path().join("nowhere.pem");
    let plain = Redis::start();
    for (bad_url, ca, reason) in [
        (url("127.0.0.1"), Some(ca_file.as_path()), "not valid for name"),
        (url("localhost"), Some(other.as_path()), "invalid peer certificate"),
        (url("localhost"), None, "invalid peer certificate"),
        (url("localhost"), Some(missing.as_path()), "redis_ca_file"),
        (plain.url(), Some(ca_file.as_path()), "not rediss://"),
    ] {
        let (dir, app) = open(&loop_vendor.uri(), &bad_url, ca);
        let e = app
            .err()
            .unwrap_or_else(|| panic!("{bad_url} with {ca:?} was accepted"))
            .to_string();
        assert!(e.contains(REDIS_VAR) && e.contains(reason), "{bad_url}: {e}");
        assert!(!e.contains(PASSWORD), "the password was shown: {e}");
        // check-config reports the same before serving.
        let (code, text) = check_config(dir.path(), &bad_url);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("rate limit: PROBLEM: ") && text.contains(reason),
            "{text}"
        );
        assert!(!text.contains(PASSWORD), "the password was shown: {text}");
    }
    let (dir, _) = open(&loop_vendor.uri(), &url("localhost"), Some(&ca_file));
    let (code, text) = check_config(dir.path(), &url("localhost"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("answers, over TLS"), "{text}");
}

/// `promo-gateway check-config` on the config `open` wrote in `dir`: its exit status and output.
fn check_config(dir: &Path, url: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promo-gateway"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("check-config")
        .env(REDIS_VAR, url)
        .env("LOOP_TOKEN", "loop-token")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
