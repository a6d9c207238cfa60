//! One log line per request, as nginx writes its access log: the real binary with
//! `--log-format json`, a create and a revoke against wiremock Loop and Partnero. The line holds
//! the request id, method, path, HTTP status, latency, the API key's name and, for a create or a
//! revoke, the code and each target's outcome; the per-target lines are DEBUG; and no line holds
//! the API key or a vendor credential.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::binary::{Binary, BIN};
use serde_json::{json, Value};

const KEY: &str = "gw-access-key-91ce";
const LOOP_TOKEN: &str = "loop-access-secret-3b7a";
const PARTNERO_TOKEN: &str = "partnero-access-secret-77d2";

#[tokio::test]
async fn each_request_writes_one_access_line_with_its_outcome_and_no_secret() {
    let lp = common::strict_server().await;
    common::expect_loop_created(&lp, LOOP_TOKEN, "ACCESS-1", "promo_access_1").await;
    let partnero = common::strict_server().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(422).set_body_json(json!({ "message": "coupon is full" })))
        .mount(&partnero)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[server.api_keys]]\nname = \"crm\"\nkey_env = \"GW_KEY\"\nscopes = [\"promo-codes:write\", \"promo-codes:read\"]\n\n{}\n{}",
        common::upstream("loop", "loop", &lp.uri(), ""),
        common::upstream("partnero", "partnero", &partnero.uri(), "")
    );
    let path = common::write_files(dir.path(), &config, &[("spring", common::SPRING_LOOP_PARTNERO)]);
    let mut cmd = Command::new(BIN);
    cmd.args(["--config"])
        .arg(&path)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("GW_KEY", KEY)
        .env("LOOP_TOKEN", LOOP_TOKEN)
        .env("PARTNERO_TOKEN", PARTNERO_TOKEN)
        .stderr(Stdio::piped());
    let gw = Binary::spawn(&mut cmd, false, Duration::from_secs(30)).unwrap_or_else(|b| panic!("{}", b.log()));

    let response = gw
        .http
        .post(format!("{}/v1/promo-codes", gw.base))
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Content-Type", "application/json")
        .header("x-request-id", "req-access-1")
        .body(json!({ "code": "ACCESS-1", "campaign": "spring", "discount": { "percent_off": 20 } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 207);
    let unknown = gw
        .http
        .get(format!("{}/v1/promo-codes/NOPE", gw.base))
        .header("Authorization", format!("Bearer {KEY}"))
        .header("x-request-id", "req-access-2")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // The line is written once the answer is: wait for the second request's.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("req-access-2") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = gw.log();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id && l["level"] == "INFO")
            .collect()
    };
    let create = of("req-access-1");
    assert_eq!(create.len(), 1, "one INFO line per request: {create:#?}");
    let f = &create[0]["fields"];
    assert_eq!(f["message"], "request finished", "{f}");
    assert_eq!(
        (f["method"].as_str(), f["path"].as_str()),
        (Some("POST"), Some("/v1/promo-codes"))
    );
    assert_eq!(
        (f["status"].as_u64(), f["key"].as_str()),
        (Some(207), Some("crm")),
        "{f}"
    );
    assert!(f["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{f}");
    assert_eq!(f["code"], "ACCESS-1", "{f}");
    assert_eq!(f["targets"], "loop=created partnero=rejected(422)", "{f}");

    let read = of("req-access-2");
    assert_eq!(read.len(), 1, "{read:#?}");
    assert_eq!(
        (read[0]["fields"]["status"].as_u64(), read[0]["fields"]["key"].as_str()),
        (Some(404), Some("crm"))
    );
    assert!(read[0]["fields"].get("targets").is_none(), "{read:#?}");

    // Per-target lines are DEBUG now, and no line holds a secret.
    assert!(!log.contains("delivery finished"), "{log}");
    common::assert_hides(&log, &[KEY, LOOP_TOKEN, PARTNERO_TOKEN]);
}
