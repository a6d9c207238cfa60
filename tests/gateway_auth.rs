//! Gateway authentication (`[[server.api_keys]]`, src/gateway_auth.rs) through the real router,
//! with a strict wiremock Loop that must get no call on any refusal, and through the real binary
//! for the start-up refusal on a non-loopback address.

mod common;

use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::binary::{Binary, BIN};

const LOOP_TOKEN: &str = "loop-secret-auth-5d1c";
const WRITER_KEY: &str = "writer-key-0f6b3a9d2c7e41";
const READER_KEY: &str = "reader-key-8e2d9c4b1a7f35";
const HASHED_KEY: &str = "hashed-key-6a1f0e9d8c7b25";

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Three keys: `writer` (promo-codes:write, from an env var), `reader` (promo-codes:read and
/// sync-jobs:read, from an env var), `hashed` (promo-codes:write, by its SHA-256).
fn keys() -> String {
    format!(
        r#"
[[server.api_keys]]
name = "writer"
key_env = "GW_KEY_WRITER"
scopes = ["promo-codes:write"]

[[server.api_keys]]
name = "reader"
key_env = "GW_KEY_READER"
scopes = ["promo-codes:read", "sync-jobs:read"]

[[server.api_keys]]
name = "hashed"
sha256 = "{}"
scopes = ["promo-codes:write"]
"#,
        sha256_hex(HASHED_KEY)
    )
}

const ENV: [(&str, &str); 3] = [
    ("LOOP_TOKEN", LOOP_TOKEN),
    ("GW_KEY_WRITER", WRITER_KEY),
    ("GW_KEY_READER", READER_KEY),
];

/// A gateway with the keys above and one Loop upstream at `loop_url`.
async fn gateway(loop_url: &str) -> common::Gateway {
    let config = format!("{}\n{}", keys(), common::upstream("loop", "loop", loop_url, ""));
    common::start(&config, &[], &ENV).await
}

/// A strict Loop that expects exactly one create of the 20%-off `code`, answering `id`.
async fn loop_creating(code: &str, id: &str) -> wiremock::MockServer {
    let loop_srv = common::strict_server().await;
    common::expect_loop_created(&loop_srv, LOOP_TOKEN, code, id).await;
    loop_srv
}

/// A request with `Authorization: <auth>` (none when `None`); status, headers' WWW-Authenticate,
/// Content-Type and the parsed body.
async fn send(
    gw: &common::Gateway,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, String, Value) {
    let mut req = gw.http.request(method, format!("{}{path}", gw.base));
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let header = |name: &str| common::header_of(&r, name).unwrap_or_default();
    let (challenge, content_type) = (header("www-authenticate"), header("content-type"));
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, challenge, content_type, body)
}

/// [`send`] a POST with the JSON `body`.
async fn post(gw: &common::Gateway, path: &str, auth: Option<&str>, body: &Value) -> (u16, String, String, Value) {
    send(gw, reqwest::Method::POST, path, auth, Some(body)).await
}

/// [`send`] a GET.
async fn get(gw: &common::Gateway, path: &str, auth: Option<&str>) -> (u16, String, String, Value) {
    send(gw, reqwest::Method::GET, path, auth, None).await
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn code(name: &str) -> Value {
    common::percent20(name, &["loop"])
}

fn assert_problem(body: &Value, content_type: &str, slug: &str, status: u16) {
    common::problems::assert_problem("", body, content_type, status, slug, "Authorization");
}

#[tokio::test]
async fn no_key_is_401_and_nothing_is_sent() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&loop_srv.uri()).await;

    let (status, challenge, ct, body) = post(&gw, "/v1/promo-codes", None, &code("NOKEY")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge, r#"Bearer realm="promo-gateway""#);
    assert_problem(&body, &ct, "unauthorized", 401);
    assert_eq!(body["title"], "Unauthorized");

    // Listings and reads need a key too.
    let (status, _, ct, body) = get(&gw, "/v1/promo-codes", None).await;
    assert_eq!(status, 401);
    assert_problem(&body, &ct, "unauthorized", 401);
    // Nothing reached Loop (the strict server fails on any call when dropped).
}

#[tokio::test]
async fn a_wrong_key_is_401_and_never_echoed() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&loop_srv.uri()).await;
    let wrong = "not-a-key-of-this-gateway-77";

    let (status, challenge, ct, body) = post(&gw, "/v1/promo-codes", Some(&bearer(wrong)), &code("WRONG")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge, r#"Bearer realm="promo-gateway", error="invalid_token""#);
    assert_problem(&body, &ct, "unauthorized", 401);
    assert!(!body.to_string().contains(wrong), "{body}");

    // A right key in another scheme or header is not read: only `Authorization: Bearer`.
    let (status, _, _, _) = post(
        &gw,
        "/v1/promo-codes",
        Some(&format!("Basic {WRITER_KEY}")),
        &code("WRONG"),
    )
    .await;
    assert_eq!(status, 401);
    let r = gw
        .http
        .post(format!("{}/v1/promo-codes", gw.base))
        .header("X-Api-Key", WRITER_KEY)
        .json(&code("WRONG"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A key with extra characters is another key.
    let (status, _, _, _) = post(
        &gw,
        "/v1/promo-codes",
        Some(&bearer(&format!("{WRITER_KEY}x"))),
        &code("WRONG"),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_key_without_the_scope_is_403_also_for_the_dry_run() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&loop_srv.uri()).await;

    for path in ["/v1/promo-codes", "/v1/promo-codes?dry_run=true"] {
        let (status, challenge, ct, body) = post(&gw, path, Some(&bearer(READER_KEY)), &code("READONLY")).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(
            challenge,
            r#"Bearer realm="promo-gateway", error="insufficient_scope", scope="promo-codes:write""#
        );
        assert_problem(&body, &ct, "forbidden", 403);
        assert_eq!(body["detail"], "the API key `reader` lacks the scope promo-codes:write");
    }
    // The writer may not read, nor start sync jobs.
    let (status, _, ct, body) = get(&gw, "/v1/promo-codes", Some(&bearer(WRITER_KEY))).await;
    assert_eq!(status, 403);
    assert_problem(&body, &ct, "forbidden", 403);
    let (status, _, _, body) = get(&gw, "/v1/requests/1", Some(&bearer(WRITER_KEY))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, _, body) = post(&gw, "/v1/sync-jobs", Some(&bearer(READER_KEY)), &json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["detail"], "the API key `reader` lacks the scope sync-jobs:write");
    let (status, _, _, body) = send(
        &gw,
        reqwest::Method::POST,
        "/v1/sync-jobs/1/cancel",
        Some(&bearer(WRITER_KEY)),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Nothing reached Loop.
}

#[tokio::test]
async fn a_key_with_the_scope_creates_and_reads() {
    let loop_srv = loop_creating("SCOPED-20", "promo_1").await;
    let gw = gateway(&loop_srv.uri()).await;

    let (status, _, _, body) = post(&gw, "/v1/promo-codes", Some(&bearer(WRITER_KEY)), &code("SCOPED-20")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created");
    assert_eq!(common::result(&body, "loop")["vendor_id"], "promo_1");

    // The dry run with the write scope: 200, nothing sent.
    let (status, _, _, body) = post(
        &gw,
        "/v1/promo-codes?dry_run=true",
        Some(&bearer(WRITER_KEY)),
        &code("DRY-20"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "would_send");

    // The reader sees the code; a sync job that does not exist is 404, not 403.
    let (status, _, _, page) = get(&gw, "/v1/promo-codes", Some(&bearer(READER_KEY))).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["code"], "SCOPED-20", "{page}");
    let (status, _, _, body) = get(&gw, "/v1/sync-jobs/999", Some(&bearer(READER_KEY))).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_key_given_by_its_sha256_works() {
    let loop_srv = loop_creating("HASHED-20", "promo_2").await;
    let gw = gateway(&loop_srv.uri()).await;

    let (status, _, _, body) = post(&gw, "/v1/promo-codes", Some(&bearer(HASHED_KEY)), &code("HASHED-20")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created");
    // The hash itself is not a key.
    let (status, _, _, _) = post(
        &gw,
        "/v1/promo-codes",
        Some(&bearer(&sha256_hex(HASHED_KEY))),
        &code("HASHED-21"),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn health_is_open_and_unknown_paths_need_a_key() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&loop_srv.uri()).await;

    let (status, _, _, body) = get(&gw, "/health", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upstreams"]["loop"]["configured"], true);
    let (status, _, _, _) = get(&gw, "/nowhere", None).await;
    assert_eq!(status, 401);
    let (status, _, ct, body) = get(&gw, "/nowhere", Some(&bearer(READER_KEY))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(ct, "application/problem+json");
}

#[tokio::test]
async fn without_keys_on_loopback_the_api_stays_open() {
    let loop_srv = loop_creating("OPEN-20", "promo_3").await;
    let config = common::upstream("loop", "loop", &loop_srv.uri(), "");
    let gw = common::start(&config, &[], &[("LOOP_TOKEN", LOOP_TOKEN)]).await;
    let (status, body) = gw.create(&code("OPEN-20")).await;
    assert_eq!(status, 201, "{body}");
}

/// `app_from_file` on `config`; the start-up error's text.
fn startup_error(config: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_files(dir.path(), config, &[]);
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match promo_gateway::app_from_file(&path, &lookup) {
        Ok(_) => panic!("the gateway started on {config}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_key_entries_stop_start_up_naming_them() {
    // An unset key variable.
    let e = startup_error(&keys(), &[("GW_KEY_WRITER", WRITER_KEY)]);
    assert!(
        e.contains("server.api_keys[1] (reader)") && e.contains("GW_KEY_READER"),
        "{e}"
    );
    assert!(!e.contains(WRITER_KEY), "{e}");
    // Both sources, neither, a bad hash, an unknown scope, no scope.
    let e = startup_error(
        "[[server.api_keys]]\nname = \"a\"\nkey_env = \"A\"\nsha256 = \"00\"\nscopes = [\"promo-codes:read\"]\n",
        &[],
    );
    assert!(
        e.contains("server.api_keys[0] (a): give key_env or sha256, not both"),
        "{e}"
    );
    let e = startup_error(
        "[[server.api_keys]]\nname = \"a\"\nscopes = [\"promo-codes:read\"]\n",
        &[],
    );
    assert!(e.contains("server.api_keys[0] (a): needs key_env"), "{e}");
    let e = startup_error(
        "[[server.api_keys]]\nname = \"a\"\nsha256 = \"abc\"\nscopes = [\"promo-codes:read\"]\n",
        &[],
    );
    assert!(
        e.contains("server.api_keys[0].sha256: must be 64 hexadecimal digits"),
        "{e}"
    );
    let e = startup_error(
        "[[server.api_keys]]\nname = \"a\"\nkey_env = \"A\"\nscopes = [\"promo-codes:delete\"]\n",
        &[("A", "k")],
    );
    assert!(
        e.contains("server.api_keys[0].scopes[0]") && e.contains("promo-codes:delete"),
        "{e}"
    );
    let e = startup_error(
        "[[server.api_keys]]\nname = \"a\"\nkey_env = \"A\"\nscopes = []\n",
        &[("A", "k")],
    );
    assert!(e.contains("server.api_keys[0].scopes: must list at least one"), "{e}");
}

/// Runs the binary on `config` with `--listen <listen>` and only `env`.
fn binary(config: &str, listen: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir().unwrap();
    common::write_files(dir.path(), config, &[]);
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(["serve", "--listen", listen])
        .env_remove("GW_KEY_WRITER")
        .env_remove("GW_KEY_READER")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    (dir, cmd)
}

#[test]
fn a_non_loopback_listen_without_keys_refuses_to_start() {
    let config = common::upstream("loop", "loop", "http://127.0.0.1:9", "");
    let (_dir, mut cmd) = binary(&config, "0.0.0.0:0", &[]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0") && stderr.contains("server.api_keys"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

#[test]
fn a_non_loopback_listen_with_keys_starts() {
    let config = format!(
        "{}\n{}",
        keys(),
        common::upstream("loop", "loop", "http://127.0.0.1:9", "")
    );
    let (_dir, mut cmd) = binary(
        &config,
        "0.0.0.0:0",
        &[("GW_KEY_WRITER", WRITER_KEY), ("GW_KEY_READER", READER_KEY)],
    );
    let started = Binary::spawn(cmd.stderr(Stdio::null()), false, std::time::Duration::from_secs(10));
    let base = started.as_ref().ok().map(|gw| gw.base.clone());
    drop(started);
    assert!(base.expect("no `listening on` line").starts_with("http://0.0.0.0:"));

    // And an unset key variable stops it, naming the variable.
    let (_dir, mut cmd) = binary(&config, "127.0.0.1:0", &[("GW_KEY_WRITER", WRITER_KEY)]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("GW_KEY_READER"), "{stderr}");
    assert!(!stderr.contains(WRITER_KEY), "{stderr}");
}
