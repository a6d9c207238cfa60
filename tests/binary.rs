//! The real `promo-gateway` binary, started as a child process on a config file in a tempdir,
//! with wiremock servers standing in for Loop and Partnero.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_promo-gateway");

// Variable names no developer machine or CI runner sets, so the child's environment is exactly
// what each test gives it.
const LOOP_VAR: &str = "PROMO_BIN_TEST_LOOP_TOKEN";
const PARTNERO_VAR: &str = "PROMO_BIN_TEST_PARTNERO_KEY";

/// The child process; killed when dropped, so a failing assertion does not leak it.
struct Gateway {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(loop_url: &str, partnero_url: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 16384

[upstreams.loop]
kind = "loop"
base_url = "{loop_url}"
auth = {{ scheme = "bearer", token_env = "{LOOP_VAR}" }}
rate_limit = {{ per_second = 100, burst = 100 }}
timeout_ms = 2000
retry = {{ max_attempts = 1 }}

[upstreams.partnero]
kind = "partnero"
base_url = "{partnero_url}"
auth = {{ scheme = "bearer", token_env = "{PARTNERO_VAR}" }}
rate_limit = {{ per_second = 100, burst = 100 }}
timeout_ms = 2000
retry = {{ max_attempts = 1 }}
"#
    )
}

const MAPPING: &str = r#"
[upstreams.loop]

[upstreams.partnero]
coupon_uuid = "coupon_spring"
discount = { percent_off = 20 }
"#;

/// Writes `<dir>/config.toml` and `<dir>/mappings/spring.toml`.
fn write_files(dir: &Path, config: &str) {
    std::fs::write(dir.join("config.toml"), config).unwrap();
    std::fs::create_dir(dir.join("mappings")).unwrap();
    std::fs::write(dir.join("mappings").join("spring.toml"), MAPPING).unwrap();
}

fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove(LOOP_VAR)
        .env_remove(PARTNERO_VAR)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts the binary and waits for its "listening on ADDR" line. Stdout (where the logs also
/// go) is drained by a thread, so the child never blocks on a full pipe.
fn spawn(config: &str, env: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), config);
    let mut child = command(dir.path(), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        }
    });
    let mut gw = Gateway {
        child,
        base: String::new(),
        _dir: dir,
    };
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(addr) => gw.base = format!("http://{addr}"),
        Err(_) => panic!(
            "the binary printed no `listening on` line; exit status: {:?}",
            gw.child.try_wait()
        ),
    }
    gw
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_creates_a_code_on_loop_and_partnero() {
    let loop_server = MockServer::start().await;
    let partnero_server = MockServer::start().await;
    // loop-create-promo.md: POST /v1/admin/promos, bearer token, the code with its own discount.
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(header("Authorization", "Bearer loop-secret"))
        .and(header("Content-Type", "application/json"))
        .and(body_json(json!({
            "code": "SPRING-20",
            "percent_off": 20,
            "valid_until": "2026-04-01T00:00:00Z",
            "max_redemptions": 500
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "promo_123", "code": "SPRING-20", "active": true, "percent_off": 20, "amount_off": null,
            "currency": null, "expires_at": "2026-04-01T00:00:00Z", "max_redemptions": 500,
            "times_redeemed": 0, "created_at": "2026-02-01T00:00:00Z"
        })))
        .expect(1)
        .named("Loop create")
        .mount(&loop_server)
        .await;
    // partnero-create-promotion-code.md: POST /v1/promotion-codes with the mapped coupon; every
    // limit as its *_status flag, the expiry as the last whole day before expires_at.
    Mock::given(method("POST"))
        .and(path("/v1/promotion-codes"))
        .and(header("Authorization", "Bearer partnero-secret"))
        .and(header("Accept", "application/json"))
        .and(header("Content-Type", "application/json"))
        .and(body_json(json!({
            "coupon_uuid": "coupon_spring",
            "code": "SPRING-20",
            "first_time_order": false,
            "limit_to_specific_partner": false,
            "limit_to_specific_customer": false,
            "minimum_order_status": false,
            "expiration_date_status": true,
            "expiration_date_value": "2026-03-31",
            "redemption_times_status": true,
            "redemption_times_value": 500
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { "code": "SPRING-20", "first_time_order": false, "times_redeemed": 0 },
            "status": 1,
            "message": "Promotion code created in the app successfully."
        })))
        .expect(1)
        .named("Partnero create")
        .mount(&partnero_server)
        .await;
    // Anything else (a second call, another path, another token) is a failure.
    for server in [&loop_server, &partnero_server] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named("unexpected call")
            .mount(server)
            .await;
    }

    let gw = spawn(
        &config(&loop_server.uri(), &partnero_server.uri()),
        &[(LOOP_VAR, "loop-secret"), (PARTNERO_VAR, "partnero-secret")],
    );
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("{}/health", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");

    let r = http
        .post(format!("{}/v1/promo-codes", gw.base))
        .json(&json!({
            "code": "SPRING-20",
            "campaign": "spring",
            "discount": { "percent_off": 20 },
            "expires_at": "2026-04-01T00:00:00Z",
            "max_redemptions": 500,
            "targets": ["loop", "partnero"]
        }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["code"], "SPRING-20");
    assert_eq!(body["dry_run"], false);
    let result = |name: &str| {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["upstream"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {body}"))
            .clone()
    };
    let l = result("loop");
    assert_eq!(l["status"], "created", "{body}");
    assert_eq!(l["vendor_id"], "promo_123");
    assert_eq!(l["attempts"], 1);
    let p = result("partnero");
    assert_eq!(p["status"], "created", "{body}");
    // Partnero returns no id of its own: the code is its id.
    assert_eq!(p["vendor_id"], "SPRING-20");
    assert_eq!(p["attempts"], 1);
    assert_eq!(
        p["warnings"],
        json!([]),
        "expiry at UTC midnight converts exactly: {body}"
    );

    drop(gw);
    assert_eq!(loop_server.received_requests().await.unwrap().len(), 1);
    assert_eq!(partnero_server.received_requests().await.unwrap().len(), 1);
    loop_server.verify().await;
    partnero_server.verify().await;
}

#[test]
fn a_malformed_config_stops_the_binary_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = config("http://127.0.0.1:9", "http://127.0.0.1:9").replacen(
        "rate_limit = { per_second = 100, burst = 100 }",
        "rate_limit = { per_second = \"ten\", burst = 100 }",
        1,
    );
    assert!(bad.contains("\"ten\""));
    write_files(dir.path(), &bad);
    let mut child = command(dir.path(), &[(LOOP_VAR, "x"), (PARTNERO_VAR, "y")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary must exit on its own; a gateway that started anyway would serve forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the binary started on a malformed config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "exit status {status:?}; stderr: {stderr}");
    assert!(
        stderr.contains("upstreams.loop.rate_limit.per_second"),
        "stderr does not name the key: {stderr}"
    );
    assert!(
        stderr.contains("config.toml"),
        "stderr does not name the file: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_credential_starts_the_binary_with_the_upstream_unconfigured() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("any call to Loop")
        .mount(&server)
        .await;
    // Partnero's key is set, Loop's is not.
    let gw = spawn(
        &config(&server.uri(), &server.uri()),
        &[(PARTNERO_VAR, "partnero-secret")],
    );
    let http = reqwest::Client::new();

    let r = http.get(format!("{}/health", gw.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["upstreams"]["loop"]["vendor"], "loop");
    assert_eq!(health["upstreams"]["loop"]["configured"], false, "{health}");
    assert_eq!(health["upstreams"]["loop"]["missing"], json!([LOOP_VAR]), "{health}");
    assert_eq!(health["upstreams"]["partnero"]["configured"], true, "{health}");
    assert!(health["upstreams"]["partnero"].get("missing").is_none(), "{health}");

    // A code for Loop alone: unconfigured, the variable named, nothing sent.
    let r = http
        .post(format!("{}/v1/promo-codes", gw.base))
        .json(&json!({ "code": "SPRING-20", "discount": { "percent_off": 20 }, "targets": ["loop"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    let l = &body["results"][0];
    assert_eq!(l["upstream"], "loop");
    assert_eq!(l["status"], "unconfigured", "{body}");
    assert_eq!(l["error"]["kind"], "missing_credentials");
    assert!(l["error"]["message"].as_str().unwrap().contains(LOOP_VAR), "{body}");
    assert_eq!(l["attempts"], 0);

    drop(gw);
    server.verify().await;
}
