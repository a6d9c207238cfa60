//! The real `promo-gateway` binary, started as a child process on a config file in a tempdir,
//! with wiremock servers standing in for Loop and Partnero.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use common::binary::{Binary as Gateway, BIN};
use common::jobs::post_job;
use common::ledger::{count_rows, wait_for_row};

// Variable names no developer machine or CI runner sets, so the child's environment is exactly
// what each test gives it.
const LOOP_VAR: &str = "PROMO_BIN_TEST_LOOP_TOKEN";
const PARTNERO_VAR: &str = "PROMO_BIN_TEST_PARTNERO_KEY";

/// One upstream for the binary: its bearer token in `var`, one attempt only.
fn table(name: &str, url: &str, var: &str) -> String {
    common::upstream(
        name,
        name,
        url,
        &format!(
            "auth = {{ scheme = \"bearer\", token_env = \"{var}\" }}\n\
             rate_limit = {{ per_second = 100, burst = 100 }}\n\
             retry = {{ max_attempts = 1 }}"
        ),
    )
}

fn config(loop_url: &str, partnero_url: &str) -> String {
    format!(
        "{}\n{}",
        table("loop", loop_url, LOOP_VAR),
        table("partnero", partnero_url, PARTNERO_VAR)
    )
}

/// Writes `<dir>/config.toml` and `<dir>/mappings/spring.toml`.
fn write_files(dir: &Path, config: &str) {
    common::write_files(dir, config, &[("spring", common::SPRING_LOOP_PARTNERO)]);
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
    let mut cmd = command(dir.path(), env);
    let gw = Gateway::spawn(cmd.stderr(Stdio::null()), false, Duration::from_secs(10)).unwrap_or_else(|mut gw| {
        panic!(
            "the binary printed no `listening on` line; exit status: {:?}",
            gw.child.try_wait()
        )
    });
    gw.keeping(dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_creates_a_code_on_loop_and_partnero() {
    // Anything but the calls mocked below (a second call, another path, another token) is a
    // failure.
    let loop_server = common::strict_server().await;
    let partnero_server = common::strict_server().await;
    // loop-create-promo.md: POST /v1/admin/promos, bearer token, the code with its own discount.
    common::loop_create(
        "loop-secret",
        json!({
            "code": "SPRING-20",
            "percent_off": 20,
            "valid_until": "2026-04-01T00:00:00Z",
            "max_redemptions": 500
        }),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(common::merged(
        common::loop_promo("promo_123", "SPRING-20"),
        json!({ "expires_at": "2026-04-01T00:00:00Z", "max_redemptions": 500 }),
    )))
    .expect(1)
    .named("Loop create")
    .mount(&loop_server)
    .await;
    // partnero-create-promotion-code.md: POST /v1/promotion-codes with the mapped coupon; every
    // limit as its *_status flag, the expiry as the last whole day before expires_at.
    common::partnero_create(
        "partnero-secret",
        json!({
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
        }),
    )
    .respond_with(common::partnero_created("SPRING-20"))
    .expect(1)
    .named("Partnero create")
    .mount(&partnero_server)
    .await;

    let gw = spawn(
        &config(&loop_server.uri(), &partnero_server.uri()),
        &[(LOOP_VAR, "loop-secret"), (PARTNERO_VAR, "partnero-secret")],
    );
    let (_, health) = gw.get("/health").await;
    assert_eq!(health["status"], "ok", "{health}");

    let (status, body) = gw
        .create(&json!({
            "code": "SPRING-20",
            "campaign": "spring",
            "discount": { "percent_off": 20 },
            "expires_at": "2026-04-01T00:00:00Z",
            "max_redemptions": 500,
            "targets": ["loop", "partnero"]
        }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["code"], "SPRING-20");
    assert_eq!(body["dry_run"], false);
    let l = common::result(&body, "loop");
    assert_eq!(l["status"], "created", "{body}");
    assert_eq!(l["vendor_id"], "promo_123");
    assert_eq!(l["attempts"], 1);
    let p = common::result(&body, "partnero");
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
    let server = common::strict_server().await;
    // Partnero's key is set, Loop's is not.
    let gw = spawn(
        &config(&server.uri(), &server.uri()),
        &[(PARTNERO_VAR, "partnero-secret")],
    );

    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["upstreams"]["loop"]["vendor"], "loop");
    assert_eq!(health["upstreams"]["loop"]["configured"], false, "{health}");
    assert_eq!(health["upstreams"]["loop"]["missing"], json!([LOOP_VAR]), "{health}");
    assert_eq!(health["upstreams"]["partnero"]["configured"], true, "{health}");
    assert!(health["upstreams"]["partnero"].get("missing").is_none(), "{health}");

    // A code for Loop alone: unconfigured, the variable named, nothing sent.
    let (status, body) = gw.create(&common::percent20("SPRING-20", &["loop"])).await;
    assert_eq!(status, 422);
    let l = &body["results"][0];
    assert_eq!(l["upstream"], "loop");
    assert_eq!(l["status"], "unconfigured", "{body}");
    assert_eq!(l["error"]["kind"], "missing_credentials");
    assert!(l["error"]["message"].as_str().unwrap().contains(LOOP_VAR), "{body}");
    assert_eq!(l["attempts"], 0);

    drop(gw);
    server.verify().await;
}

/// One NDJSON line with a 64 MiB description is refused naming its line and the limit, and the
/// binary never reads it into memory (the audit saw 409 MB of RSS for a 100 MB line, which was
/// accepted, stored and sent).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_upload_line_is_refused_without_being_held_in_memory() {
    let loop_srv = common::strict_server().await;
    let partnero_srv = common::strict_server().await;
    let gw = spawn(
        &config(&loop_srv.uri(), &partnero_srv.uri()),
        &[(LOOP_VAR, "t"), (PARTNERO_VAR, "t")],
    );
    let mib = 1 << 20;
    let mut upload = br#"{"code":"BIG","discount":{"percent_off":20},"description":""#.to_vec();
    upload.resize(upload.len() + 64 * mib, b'x');
    upload.extend_from_slice(b"\"}\n");
    let (status, _, body) = post_job(&gw, "?campaign=spring&targets=loop", "application/x-ndjson", upload).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "line 1", "{body}");
    assert!(
        body["errors"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("server.max_body_bytes"),
        "{body}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let peak_kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib * 1024 < 48 * mib,
        "peak RSS {} MiB for a 64 MiB line",
        peak_kib / 1024
    );
}

/// The binary with server keys (`key = value` lines for [server]) and two strict upstreams.
async fn spawn_with_server(server: &str) -> (Gateway, wiremock::MockServer, wiremock::MockServer) {
    let loop_srv = common::strict_server().await;
    let partnero_srv = common::strict_server().await;
    let config = format!("{server}\n{}", config(&loop_srv.uri(), &partnero_srv.uri()));
    let gw = spawn(&config, &[(LOOP_VAR, "t"), (PARTNERO_VAR, "t")]);
    (gw, loop_srv, partnero_srv)
}

/// A raw TCP connection to the binary at `base` (`http://ADDR`).
async fn connect(base: &str) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Writes `bytes` one a tick (100 ms), then keeps writing spaces, until the server closes the
/// connection; what the server sent, and how long the connection stayed open. Panics if it is
/// still open after `bound`.
async fn trickle(stream: &mut tokio::net::TcpStream, bytes: &[u8], bound: Duration) -> (String, Duration) {
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut i = 0;
    loop {
        assert!(
            started.elapsed() < bound,
            "still open after {bound:?}; the server sent {:?}",
            String::from_utf8_lossy(&answer)
        );
        let byte = bytes.get(i).copied().unwrap_or(b' ');
        i += 1;
        if stream.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 4096];
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

/// A client sending its headers one byte at a time, or nothing at all, is dropped once
/// `server.header_read_timeout_ms` has passed (the audit kept one open for 42 s, with no end).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_headers_slowly_or_not_at_all_is_dropped() {
    let (gw, _l, _p) = spawn_with_server("header_read_timeout_ms = 700").await;
    let mut slow = connect(&gw.base).await;
    let (_, open) = trickle(
        &mut slow,
        b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: ",
        Duration::from_secs(15),
    )
    .await;
    assert!(
        open >= Duration::from_millis(600),
        "closed after {open:?}, before its timeout"
    );

    // A connection that sends nothing goes the same way.
    let mut idle = connect(&gw.base).await;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection was not closed: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    // A prompt client is served as before.
    let (status, _) = gw.get("/health").await;
    assert_eq!(status, 200);
}

/// A client sending a body one byte at a time gets 408 once `server.body_read_timeout_ms`
/// has passed since its headers, and the connection is closed; a sync job's body has
/// `server.upload_read_timeout_ms`.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_its_body_slowly_gets_408_and_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let (gw, _l, _p) =
        spawn_with_server("body_read_timeout_ms = 800\nupload_read_timeout_ms = 1500\nheader_read_timeout_ms = 5000")
            .await;
    for (path, content_type, at_least) in [
        ("/v1/promo-codes", "application/json", 700),
        (
            "/v1/sync-jobs?campaign=spring&targets=loop",
            "application/x-ndjson",
            1400,
        ),
    ] {
        let mut slow = connect(&gw.base).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        let (answer, open) = trickle(&mut slow, b"{\"code\": \"SLOW-1\"", Duration::from_secs(15)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{path}: {answer}"
        );
        assert!(
            answer.contains("body_read_timeout_ms") || answer.contains("upload_read_timeout_ms"),
            "{answer}"
        );
        assert!(
            open >= Duration::from_millis(at_least),
            "{path}: answered after {open:?}"
        );
    }
    let (status, page) = gw.get("/v1/promo-codes").await;
    assert_eq!((status, &page["items"]), (200, &serde_json::json!([])), "{page}");
}

/// Beyond `server.max_connections`, a connection is not served until another closes.
#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (gw, _l, _p) = spawn_with_server("max_connections = 2\nheader_read_timeout_ms = 30000").await;
    let first = connect(&gw.base).await;
    let _second = connect(&gw.base).await;
    let refused = reqwest::Client::new()
        .get(format!("{}/health", gw.base))
        .timeout(Duration::from_millis(1500))
        .send()
        .await;
    assert!(refused.is_err(), "a third connection was served: {refused:?}");
    drop(first);
    let served = reqwest::Client::new()
        .get(format!("{}/health", gw.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
}

/// Starts the binary on the config already in `dir` (its ledger kept there across starts).
fn spawn_in(dir: &Path) -> Gateway {
    let mut cmd = command(dir, &[(LOOP_VAR, "t"), (PARTNERO_VAR, "t")]);
    Gateway::spawn(cmd.stderr(Stdio::null()), false, Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the binary printed no `listening on` line"))
}

/// A binary killed (SIGKILL) in the middle of a large upload's intake leaves no half job: killed
/// while staging (the job not yet accepted), the next start removes the job and its staged codes
/// and the ledger holds nothing; killed once the job was accepted and its codes were being
/// written, the next start finishes writing them and runs the whole job.
#[tokio::test(flavor = "multi_thread")]
async fn a_binary_killed_mid_intake_leaves_no_half_job() {
    // The job's target takes one call a minute: nothing is delivered during the test.
    let loop_srv = wiremock::MockServer::start().await;
    let partnero_srv = common::strict_server().await;
    let n = 150_000;
    let upload: String = (0..n)
        .map(|i| format!("{{\"code\":\"CUT-{i:07}\",\"discount\":{{\"percent_off\":20}}}}\n"))
        .collect();
    for (killed_while, state) in [("staging", "staging"), ("promoting", "promoting")] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{}\n{}",
            common::upstream(
                "loop",
                "loop",
                &loop_srv.uri(),
                &format!("auth = {{ scheme = \"bearer\", token_env = \"{LOOP_VAR}\" }}\nrate_limit = {{ per_second = 1, burst = 1 }}")
            ),
            table("partnero", &partnero_srv.uri(), PARTNERO_VAR)
        );
        write_files(dir.path(), &config);
        let ledger = dir.path().join("promo-gateway.db");
        let mut gw = spawn_in(dir.path());
        let post = {
            let (http, url) = (
                gw.http.clone(),
                format!("{}/v1/sync-jobs?campaign=spring&targets=loop", gw.base),
            );
            let upload = upload.clone();
            tokio::spawn(async move {
                let _ = http
                    .post(url)
                    .header("Content-Type", "application/x-ndjson")
                    .body(upload)
                    .send()
                    .await;
            })
        };
        let sql = format!("SELECT id FROM jobs WHERE state = '{state}'");
        tokio::task::spawn_blocking({
            let ledger = ledger.clone();
            move || wait_for_row(&ledger, &sql, Duration::from_secs(60))
        })
        .await
        .unwrap();
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();
        let _ = post.await;
        assert_eq!(
            count_rows(&ledger, "SELECT COUNT(*) FROM jobs WHERE state = 'running'"),
            0,
            "{killed_while}"
        );

        let gw = spawn_in(dir.path());
        assert_eq!(
            count_rows(&ledger, "SELECT COUNT(*) FROM job_stage"),
            0,
            "{killed_while}"
        );
        let (status, job) = gw.get("/v1/sync-jobs/1").await;
        if killed_while == "staging" {
            assert_eq!(status, 404, "a job killed while staging is visible: {job}");
            let (_, page) = gw.get("/v1/promo-codes?limit=1").await;
            assert_eq!(page["items"], json!([]), "{page}");
            assert_eq!(count_rows(&ledger, "SELECT COUNT(*) FROM jobs"), 0);
        } else {
            assert_eq!(status, 200, "{job}");
            assert_eq!(job["state"], "running", "{job}");
            assert_eq!(job["total"], n, "{job}");
            assert_eq!(job["targets_progress"]["loop"]["total"], n, "{job}");
            assert_eq!(count_rows(&ledger, "SELECT COUNT(*) FROM codes"), n as i64);
        }
        drop(gw);
    }
}

/// A revoke killed (SIGKILL) between its claim and the vendor's answer is resumed by the next
/// start: the one call that was in flight is sent once more, no other call is made, and the
/// ledger ends with the code revoked and the revoke's answer stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoke_killed_mid_call_is_resumed_with_at_most_the_call_in_flight_resent() {
    use wiremock::matchers::{body_json, method, path};
    let loop_srv = common::strict_server().await;
    let partnero_srv = common::strict_server().await;
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &config(&loop_srv.uri(), &partnero_srv.uri()));
    common::partnero_endpoint()
        .respond_with(common::partnero_created("LEAK-9"))
        .expect(1)
        .mount(&partnero_srv)
        .await;
    let delete = || {
        wiremock::Mock::given(method("DELETE"))
            .and(path("/v1/promotion-codes"))
            .and(body_json(
                json!({ "code": "LEAK-9", "coupon": { "uuid_code": "coupon_spring" } }),
            ))
    };
    // The first delete is held far longer than the test; the resent one is answered at once.
    let deleted = ResponseTemplate::new(200).set_body_json(json!({ "data": { "status": 1, "message": "deleted" } }));
    delete()
        .respond_with(deleted.clone().set_delay(Duration::from_secs(120)))
        .up_to_n_times(1)
        .mount(&partnero_srv)
        .await;
    delete().respond_with(deleted).mount(&partnero_srv).await;

    let mut gw = spawn_in(dir.path());
    let (status, body) = gw
        .create(&json!({ "code": "LEAK-9", "campaign": "spring", "discount": { "percent_off": 20 }, "targets": ["partnero"] }))
        .await;
    assert_eq!(status, 201, "{body}");
    let revoke = {
        let (http, url) = (gw.http.clone(), format!("{}/v1/promo-codes/LEAK-9/revoke", gw.base));
        tokio::spawn(async move {
            let _ = http
                .post(url)
                .body(json!({ "campaign": "spring", "delete": true }).to_string())
                .send()
                .await;
        })
    };
    common::wait_for_requests(&partnero_srv, 2).await;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let _ = revoke.await;

    let gw = spawn_in(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let (_, record) = gw.get("/v1/promo-codes/LEAK-9?campaign=spring").await;
        if record["revocations"]["partnero"]["status"] == "revoked" {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "not resumed: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(record["revoked_at"].is_string(), "{record}");
    let requests = partnero_srv.received_requests().await.unwrap();
    let deletes = requests.iter().filter(|r| r.method.as_str() == "DELETE").count();
    assert_eq!(deletes, 2, "the call in flight, resent once");
    // The revoke (request 2) is finished, its answer saying the call was resent.
    let (status, stored) = gw.get("/v1/requests/2").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["finished"], true, "{stored}");
    let result = common::result(&stored, "partnero");
    assert_eq!(result["status"], "revoked", "{result}");
    assert!(
        common::warning(result, "code").contains("resent after a restart"),
        "{result}"
    );
    // And a create of the code stays refused after the restart.
    let (status, _) = gw
        .create(&json!({ "code": "LEAK-9", "campaign": "spring", "discount": { "percent_off": 20 }, "targets": ["partnero"] }))
        .await;
    assert_eq!(status, 409);
}
