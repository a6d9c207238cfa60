//! No secret in any log line or response: the REAL binary, with credentials for all six
//! upstreams of the example campaign (bearer for Loop, Partnero and Moltin, Basic for
//! Spacebring, OAuth2 client credentials for both Limio versions against a wiremock token
//! endpoint), RUST_LOG=debug, in both log formats. Also: the request id on every line of a
//! request, taken from `x-request-id` or generated, and returned.
//!
//! The vendors echo the request's `Authorization` header in 400, 429 and 503 answers (the 429s
//! and 503s are retried, so the "retrying" line sees them), a token endpoint echoes its Basic
//! client authentication in a 401, and a 400 echo straddles the 200-character cut of a
//! vendor's message: no log line, answer, job result or ledger byte (database and WAL) may
//! hold any secret, in any form the gateway sent it, nor the first characters of one.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use common::binary::{Binary, BIN};

const EXAMPLE: &str = include_str!("../mappings/example.toml");
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";
const COUPON: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";

// Distinctive values, each found nowhere else: the environment variables that hold them.
const LOOP_TOKEN: &str = "loopTok-Zq81xLk2";
const PARTNERO_TOKEN: &str = "partneroTok-Wm47pRt9";
const MOLTIN_TOKEN: &str = "moltinTok-Hy36vNc5";
const SB_KEY: &str = "sbKey-Jd92tQe4";
const SB_SECRET: &str = "sbSecret-Ub58kFw1";
const LIMIO_ID: &str = "limioId-Pc13gXs7";
const LIMIO_SECRET: &str = "limioSecret-Ro64mAz8";
/// The access token the Limio token endpoint issues.
const LIMIO_ACCESS: &str = "limioAccess-Ke29bVy3";

const ENV: &[(&str, &str)] = &[
    ("LEAK_LOOP_TOKEN", LOOP_TOKEN),
    ("LEAK_PARTNERO_TOKEN", PARTNERO_TOKEN),
    ("LEAK_MOLTIN_TOKEN", MOLTIN_TOKEN),
    ("LEAK_SB_KEY", SB_KEY),
    ("LEAK_SB_SECRET", SB_SECRET),
    ("LEAK_LIMIO_ID", LIMIO_ID),
    ("LEAK_LIMIO_SECRET", LIMIO_SECRET),
];

/// Every secret, and the encodings in which one could be printed.
fn secrets() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let mut all: Vec<String> = [
        LOOP_TOKEN,
        PARTNERO_TOKEN,
        MOLTIN_TOKEN,
        SB_KEY,
        SB_SECRET,
        LIMIO_ID,
        LIMIO_SECRET,
        LIMIO_ACCESS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.push(b64(format!("{SB_KEY}:{SB_SECRET}")));
    all.push(b64(format!("{LIMIO_ID}:{LIMIO_SECRET}")));
    all.push(format!("{SB_KEY}:{SB_SECRET}"));
    all.push(format!("{LIMIO_ID}:{LIMIO_SECRET}"));
    // A cut-off echo keeps the first characters of a secret: those must go too.
    let prefixes: Vec<String> = all.iter().map(|s| s.chars().take(10).collect()).collect();
    all.extend(prefixes);
    all
}

/// The campaign whose only target is a Limio whose token endpoint refuses every client.
const ECHO_CAMPAIGN: &str = r#"
[upstreams.limio-echo]
attached_discount = { id = "d_8f2e", path = "/offers/discounts/spring-20", name = "Spring 20%" }
discount = { percent_off = 20 }
duration = { length = 3, unit = "months" }
"#;

/// The header a vendor call carried, without its scheme.
fn credential_of(r: &Request) -> String {
    let value = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    value.split_once(' ').map_or(value, |(_, c)| c).to_owned()
}

fn authorization_of(r: &Request) -> String {
    r.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Vendors that echo the call's credentials, mounted before the ones that answer well: codes
/// `E400-*` get a plain-text 400 whose credential starts 190 characters in (the gateway keeps
/// 200 of a vendor's text), `E429-*` a 429 (Retry-After: 0) and `E503-*` a 503 quoting the
/// header, JSON-escaped and plain.
async fn mount_echoes(server: &MockServer) {
    use wiremock::matchers::body_string_contains;
    Mock::given(method("POST"))
        .and(body_string_contains("E400-"))
        .respond_with(|r: &Request| {
            let text = format!("{}{}", "x".repeat(190), credential_of(r));
            ResponseTemplate::new(400).set_body_raw(text, "text/plain")
        })
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("E429-"))
        .respond_with(|r: &Request| {
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0")
                .set_body_json(
                    json!({ "message": format!("slow down; you sent Authorization: {}", authorization_of(r)) }),
                )
        })
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("E503-"))
        .respond_with(|r: &Request| {
            ResponseTemplate::new(503).set_body_raw(
                format!("busy. request headers: authorization={}", authorization_of(r)),
                "text/plain",
            )
        })
        .mount(server)
        .await;
    // A token endpoint that refuses the client, quoting its Basic client authentication.
    Mock::given(method("POST"))
        .and(path("/oauth/echo-token"))
        .respond_with(|r: &Request| {
            ResponseTemplate::new(401).set_body_json(json!({
                "error": "invalid_client",
                "error_description": format!("client authentication {} failed", authorization_of(r)),
            }))
        })
        .mount(server)
        .await;
}

fn config(vendors: &str) -> String {
    let bearer = |var: &str| format!("auth = {{ scheme = \"bearer\", token_env = \"{var}\" }}");
    let limio_auth = common::oauth2_client_credentials(
        &format!("{vendors}/oauth/token"),
        "LEAK_LIMIO_ID",
        "LEAK_LIMIO_SECRET",
        "",
    );
    let limio_echo_auth = common::oauth2_client_credentials(
        &format!("{vendors}/oauth/echo-token"),
        "LEAK_LIMIO_ID",
        "LEAK_LIMIO_SECRET",
        ", client_auth = \"basic\"",
    );
    [
        common::upstream(
            "limio-echo",
            "limio",
            &format!("{vendors}/api"),
            &format!("version = \"v3\"\n{limio_echo_auth}"),
        ),
        common::upstream("loop", "loop", vendors, &bearer("LEAK_LOOP_TOKEN")),
        common::upstream("partnero", "partnero", vendors, &bearer("LEAK_PARTNERO_TOKEN")),
        common::upstream("moltin", "moltin", vendors, &bearer("LEAK_MOLTIN_TOKEN")),
        common::upstream(
            "spacebring",
            "spacebring",
            vendors,
            r#"auth = { scheme = "basic", username_env = "LEAK_SB_KEY", password_env = "LEAK_SB_SECRET" }"#,
        ),
        common::upstream(
            "limio-v2",
            "limio",
            &format!("{vendors}/api"),
            &format!("version = \"v2\"\n{limio_auth}"),
        ),
        common::upstream(
            "limio-v3",
            "limio",
            &format!("{vendors}/api"),
            &format!("version = \"v3\"\n{limio_auth}"),
        ),
    ]
    .join("\n")
}

/// The code a vendor call carries, wherever the vendor puts it.
fn code_of(r: &Request) -> String {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    [
        &body["code"],
        &body["promocode"]["code"],
        &body["data"]["code"],
        &body["data"][0]["code"],
    ]
    .iter()
    .find_map(|v| v.as_str())
    .or_else(|| body["name"].as_str())
    .unwrap_or("?")
    .to_owned()
}

/// Every vendor of the example campaign on one server, each checking its credentials. Codes
/// named `ECHO-*` meet a Loop and a Spacebring that echo the credentials in their errors.
async fn vendors() -> MockServer {
    let server = MockServer::start().await;
    let bearer = |t: &str| format!("Bearer {t}");
    // The echoing errors first: wiremock takes the first mock that matches.
    mount_echoes(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(header("Authorization", bearer(LOOP_TOKEN).as_str()))
        .and(wiremock::matchers::body_string_contains("ECHO-"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "unauthorized",
            "message": format!("access token {LOOP_TOKEN} is revoked (Authorization: Bearer {LOOP_TOKEN})")
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/discounts/promocodes/v1"))
        .and(header("Authorization", common::basic(SB_KEY, SB_SECRET).as_str()))
        .and(wiremock::matchers::body_string_contains("ECHO-"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "code": "bad_request", "message": format!("bad request from {} ({SB_KEY}/{SB_SECRET})", common::basic(SB_KEY, SB_SECRET)) }
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(header("Authorization", bearer(LOOP_TOKEN).as_str()))
        .respond_with(|r: &Request| common::loop_created("promo_1", &code_of(r)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/promotion-codes"))
        .and(header("Authorization", bearer(PARTNERO_TOKEN).as_str()))
        .respond_with(|r: &Request| common::partnero_created(&code_of(r)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes")))
        .and(header("Authorization", bearer(MOLTIN_TOKEN).as_str()))
        .respond_with(common::moltin_created(PROMOTION))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/discounts/promocodes/v1"))
        .and(header("Authorization", common::basic(SB_KEY, SB_SECRET).as_str()))
        .respond_with(|r: &Request| common::spacebring_created("sb_1", &code_of(r), COUPON, "net"))
        .mount(&server)
        .await;
    for version in ["v2", "v3"] {
        let record = format!("promo_code_{version}");
        Mock::given(method("POST"))
            .and(path(format!("/api/objects/limio/promo_codes_{version}")))
            .and(header("Authorization", bearer(LIMIO_ACCESS).as_str()))
            .respond_with(move |r: &Request| {
                let code = code_of(r);
                common::limio_updated(&format!("{record}-{code}"), &code, &record)
            })
            .mount(&server)
            .await;
    }
    common::token_endpoint("/oauth/token", LIMIO_ID, LIMIO_SECRET)
        .and(body_string("grant_type=client_credentials"))
        .respond_with(common::token_issued(LIMIO_ACCESS))
        .mount(&server)
        .await;
    server
}

/// The binary, its output collected line by line (stdout and stderr).
fn spawn(config: &str, log_format: &str) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    common::write_files(dir.path(), config, &[("example", EXAMPLE), ("echo", ECHO_CAMPAIGN)]);
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(["--log-format", log_format, "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped());
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    let running = Binary::spawn(&mut cmd, true, Duration::from_secs(10))
        .unwrap_or_else(|running| panic!("no `listening on` line: {:?}", running.lines.lock().unwrap()));
    running.keeping(dir)
}

impl Binary {
    /// SIGTERM, then every line the process wrote.
    fn stop(mut self) -> Vec<String> {
        self.sigterm();
        let status = self.exit_within(Duration::from_secs(10));
        assert!(status.success(), "{status:?}");
        for r in std::mem::take(&mut self.readers) {
            r.join().unwrap();
        }
        let lines = self.lines.lock().unwrap().clone();
        lines
    }
}

/// A request with its own request id; the answer's status, request id header and body text.
async fn send(
    api: &common::Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    request_id: Option<&str>,
) -> (u16, String, String) {
    let mut r = api.http.request(method, format!("{}{path}", api.base));
    if let Some(b) = body {
        r = r.header("Content-Type", "application/json").body(b.to_string());
    }
    if let Some(id) = request_id {
        r = r.header("x-request-id", id);
    }
    let response = r.send().await.unwrap();
    let status = response.status().as_u16();
    let id = common::header_of(&response, "x-request-id").unwrap_or_default();
    (status, id, response.text().await.unwrap())
}

fn example(code: &str) -> Value {
    json!({ "code": code, "campaign": "example", "discount": { "percent_off": 20 } })
}

async fn drive(format: &str) {
    let server = vendors().await;
    let gw = spawn(&config(&server.uri()), format);
    let api = &gw.api;
    let mut bodies = Vec::new();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // Successes on all six, under the client's own request id.
    let (status, id, body) = send(
        api,
        post.clone(),
        "/v1/promo-codes",
        Some(example("SPRING-1")),
        Some("client-id-42"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(id, "client-id-42");
    let parsed: Value = serde_json::from_str(&body).unwrap();
    for target in ["loop", "partnero", "moltin", "spacebring", "limio-v2", "limio-v3"] {
        assert_eq!(common::result(&parsed, target)["status"], "created", "{target}: {body}");
    }
    bodies.push(body);
    // Vendors echoing the credentials in their errors; a generated request id (a UUID).
    let echo = json!({ "code": "ECHO-1", "campaign": "example", "discount": { "percent_off": 20 }, "targets": ["loop", "spacebring"] });
    let (status, id, body) = send(api, post.clone(), "/v1/promo-codes", Some(echo), None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(common::result(&parsed, "loop")["status"], "rejected", "{body}");
    assert_eq!(common::result(&parsed, "spacebring")["status"], "rejected", "{body}");
    assert!(
        body.contains("is revoked"),
        "the vendor's message is kept, redacted: {body}"
    );
    bodies.push(body);
    // Every vendor echoing its credentials in a 400 cut short, a retried 429 and a retried 503.
    for code in ["E400-1", "E429-1", "E503-1"] {
        let (status, _, body) = send(api, post.clone(), "/v1/promo-codes", Some(example(code)), None).await;
        assert_eq!(status, 502, "{body}");
        let parsed: Value = serde_json::from_str(&body).unwrap();
        for target in ["loop", "partnero", "moltin", "spacebring", "limio-v2", "limio-v3"] {
            let result = common::result(&parsed, target);
            let expected = match code {
                "E400-1" => "rejected",
                "E429-1" => "throttled",
                _ => "failed",
            };
            assert_eq!(result["status"], expected, "{code} {target}: {body}");
            assert!(
                result["error"]["message"].as_str().unwrap().contains("[redacted]"),
                "{code} {target}: the vendor's words are kept, the credential redacted: {body}"
            );
        }
        bodies.push(body);
    }
    // A token endpoint that quotes the client's Basic authentication in its 401.
    let token = json!({ "code": "TOKEN-1", "campaign": "echo", "discount": { "percent_off": 20 } });
    let (status, _, body) = send(api, post.clone(), "/v1/promo-codes", Some(token), None).await;
    let parsed: Value = serde_json::from_str(&body).unwrap();
    let result = common::result(&parsed, "limio-echo");
    assert_eq!(result["status"], "failed", "{status} {body}");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client authentication Basic [redacted] failed"),
        "{body}"
    );
    bodies.push(body);
    // A hostile request id is cut down to its safe characters.
    let (status, id, body) = send(
        api,
        post.clone(),
        "/v1/promo-codes?dry_run=true",
        Some(example("DRY-1")),
        Some("dry\"run {id}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(id, "dryrunid");
    bodies.push(body);
    // A sync job to every target, waited for.
    let job = json!({ "campaign": "example", "targets": ["loop", "spacebring", "limio-v3"], "codes": ["JOB-1", "JOB-2", "E400-J", "E503-J"] , "template": { "discount": { "percent_off": 20 } } });
    let (status, _, body) = send(api, post.clone(), "/v1/sync-jobs", Some(job), None).await;
    assert_eq!(status, 202, "{body}");
    let job_id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_i64().unwrap();
    bodies.push(body);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, body) = send(api, get.clone(), &format!("/v1/sync-jobs/{job_id}"), None, None).await;
        let state = serde_json::from_str::<Value>(&body).unwrap()["state"].clone();
        bodies.push(body.clone());
        if state != "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in [
        format!("/v1/sync-jobs/{job_id}/results"),
        "/health".into(),
        "/metrics".into(),
        "/v1/promo-codes/ECHO-1".into(),
        "/v1/promo-codes/E429-1".into(),
        "/v1/promo-codes/E400-1".into(),
        "/v1/promo-codes/TOKEN-1".into(),
    ] {
        let (status, _, body) = send(api, get.clone(), &path, None, None).await;
        assert!(status < 500, "{path}: {status} {body}");
        bodies.push(body);
    }

    let dir = gw.dir().unwrap().to_owned();
    // The WAL while the gateway runs (it may be checkpointed away at the stop).
    let ledger = common::ledger::ledger_files(&dir);
    assert!(ledger.iter().any(|(name, _)| name.ends_with("-wal")), "{ledger:?}");
    let lines = gw.stop();
    assert!(
        lines.iter().any(|l| l.contains("DEBUG")),
        "RUST_LOG=debug took effect: {lines:#?}"
    );
    assert!(!lines.is_empty());
    // The request id is on the lines of its request: at least the answer's line.
    let tagged: Vec<&String> = lines.iter().filter(|l| l.contains("client-id-42")).collect();
    assert!(tagged.len() >= 2, "{format}: {lines:#?}");
    if format == "json" {
        for line in lines.iter().filter(|l| !l.starts_with("listening on ")) {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        }
        let answered = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == "client-id-42" && v["fields"]["status"] == 201);
        assert!(
            answered.is_some(),
            "no JSON line of the answer with its request id: {lines:#?}"
        );
    }
    for secret in secrets() {
        for (name, bytes) in &ledger {
            assert!(
                memchr_find(bytes, secret.as_bytes()).is_none(),
                "{format}: the ledger file {name} holds `{secret}`"
            );
        }
        for line in &lines {
            assert!(!line.contains(&secret), "{format}: a log line holds `{secret}`: {line}");
        }
        for body in &bodies {
            assert!(!body.contains(&secret), "{format}: a response holds `{secret}`: {body}");
        }
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_a_text_log_line_or_a_response() {
    drive("text").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_a_json_log_line_or_a_response() {
    drive("json").await;
}
