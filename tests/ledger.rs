//! The ledger through the real router: idempotent repeats, the record of a create, and a create
//! that a stop interrupted being resent at the next start. Vendors are wiremock Loop servers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

const TOKEN: &str = "loop-ledger-secret-9f3b";
const TOKEN2: &str = "loop2-ledger-secret-c41d";

/// Two Loop upstreams, `loop` and `loop2`, on their own strict servers.
async fn two_loops() -> (MockServer, MockServer, common::Gateway) {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    let config = [
        common::upstream("loop", "loop", &a.uri(), ""),
        common::upstream("loop2", "loop", &b.uri(), ""),
    ]
    .join("\n");
    let gw = common::start(&config, &[], &[("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)]).await;
    (a, b, gw)
}

/// Serves the gateway on an existing config file (and so on the ledger beside it), with `env`.
async fn serve_config(path: &std::path::Path, env: &[(&str, &str)]) -> common::Gateway {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app_from_file(path, &|k: &str| env.get(k).cloned()).unwrap();
    common::serve(router).await
}

/// POSTs a create with an `Idempotency-Key`; the status, the replay header and the body.
async fn create_with_key(gw: &common::Gateway, key: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = gw
        .http
        .post(format!("{}/v1/promo-codes", gw.base))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, r.json().await.unwrap())
}

#[tokio::test]
async fn a_repeated_key_replays_the_answer_without_calling_again() {
    let (a, _b, gw) = two_loops().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_1", "SPRING20"))
        .expect(1)
        .mount(&a)
        .await;
    let body = common::percent20("SPRING20", &["loop"]);

    let (status, replayed, first) = create_with_key(&gw, "k-1", &body).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(replayed, None);
    let id = first["request_id"].as_i64().expect("a request id");

    let (status, replayed, second) = create_with_key(&gw, "k-1", &body).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(second, first, "a replay answers exactly what the first create answered");
    assert_eq!(second["request_id"], id);
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_refused_and_sends_nothing() {
    let (a, _b, gw) = two_loops().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_1", "SPRING20"))
        .expect(1)
        .mount(&a)
        .await;
    let (status, _, first) = create_with_key(&gw, "k-2", &common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 201, "{first}");

    let (status, _, problem) = create_with_key(&gw, "k-2", &common::percent20("SUMMER20", &["loop"])).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:promo-gateway:problem:idempotency-key-reused");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("request {}", first["request_id"])));
}

/// A repeat sends again only what failed: `loop` was created and is not called twice, `loop2`
/// answered 500 the first time and is sent once more.
#[tokio::test]
async fn a_repeat_resends_only_the_targets_that_failed() {
    let (a, b, gw) = two_loops().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_a", "SPRING20"))
        .expect(1)
        .mount(&a)
        .await;
    common::loop_create(TOKEN2, common::loop_body("SPRING20"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&b)
        .await;
    common::loop_create(TOKEN2, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_b", "SPRING20"))
        .with_priority(2)
        .expect(1)
        .mount(&b)
        .await;
    let body = common::percent20("SPRING20", &["loop", "loop2"]);

    let (status, _, first) = create_with_key(&gw, "k-3", &body).await;
    assert_eq!(status, 207, "{first}");
    assert_eq!(common::result(&first, "loop")["status"], "created");
    assert_eq!(common::result(&first, "loop2")["status"], "failed");

    let (status, replayed, second) = create_with_key(&gw, "k-3", &body).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(replayed, None, "loop2 was sent again: not a pure replay");
    assert_eq!(second["request_id"], first["request_id"]);
    assert_eq!(common::result(&second, "loop")["vendor_id"], "promo_a");
    assert_eq!(common::result(&second, "loop")["attempts"], 1);
    assert_eq!(common::result(&second, "loop2")["status"], "created");
    assert_eq!(common::result(&second, "loop2")["vendor_id"], "promo_b");

    // Settled now: a third repeat is a pure replay and calls nobody.
    let (status, replayed, third) = create_with_key(&gw, "k-3", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")));
    assert_eq!(third, second);
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_flight_gets_409() {
    let (a, _b, gw) = two_loops().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_1", "SPRING20").set_delay(Duration::from_millis(800)))
        .expect(1)
        .mount(&a)
        .await;
    let body = common::percent20("SPRING20", &["loop"]);
    let (first, second) = tokio::join!(create_with_key(&gw, "k-4", &body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        create_with_key(&gw, "k-4", &body).await
    });
    assert_eq!(first.0, 201, "{}", first.2);
    assert_eq!(second.0, 409, "{}", second.2);
    assert_eq!(second.2["type"], "urn:promo-gateway:problem:idempotency-in-progress");
    assert_eq!(second.2["errors"][0]["field"], "Idempotency-Key");
}

#[tokio::test]
async fn malformed_keys_are_refused_and_send_nothing() {
    let (_a, _b, gw) = two_loops().await;
    let body = common::percent20("SPRING20", &["loop"]);
    for key in ["", "has space", &"k".repeat(256)] {
        let (status, _, problem) = create_with_key(&gw, key, &body).await;
        assert_eq!(status, 400, "{key:?}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key", "{problem}");
    }
}

#[tokio::test]
async fn the_record_of_a_create_can_be_read_back() {
    let (a, b, gw) = two_loops().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_1", "SPRING20"))
        .expect(1)
        .mount(&a)
        .await;
    common::loop_create(TOKEN2, common::loop_body("SPRING20"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&b)
        .await;
    let (status, created) = gw.create(&common::percent20("SPRING20", &["loop", "loop2"])).await;
    assert_eq!(status, 207, "{created}");
    let id = created["request_id"].as_i64().unwrap();

    let (status, record) = gw.get(&format!("/v1/requests/{id}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["request_id"], id);
    assert_eq!(record["code"], "SPRING20");
    assert_eq!(record["finished"], true);
    assert_eq!(record["pending"], json!([]));
    assert_eq!(record["results"], created["results"]);

    for missing in ["/v1/requests/999", "/v1/requests/abc"] {
        let raw = gw.get_raw(missing).await;
        assert_eq!(raw.status, 404, "{missing}: {}", raw.text);
        assert_eq!(raw.content_type, "application/problem+json");
    }
}

/// A create recorded with a target still pending (as a stop mid-delivery leaves it) is sent at
/// the next start, recorded, and its result says it was resent.
#[tokio::test]
async fn a_create_interrupted_by_a_stop_is_resent_at_the_next_start() {
    let server = common::strict_server().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_resumed", "SPRING20"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_files(dir.path(), &common::upstream("loop", "loop", &server.uri(), ""), &[]);

    // The state a stop leaves behind: the create recorded, its target still pending.
    let ledger = promo_gateway::ledger::Ledger::open(&dir.path().join("promo-gateway.db")).unwrap();
    let begun = ledger
        .begin(
            None,
            "SPRING20".into(),
            common::percent20("SPRING20", &["loop"]),
            vec![("loop".into(), None)],
        )
        .await
        .unwrap();
    let promo_gateway::ledger::Begin::New(id) = begun else {
        panic!("a fresh ledger begins a new create");
    };
    drop(ledger);

    let gw = serve_config(&path, &[("LOOP_TOKEN", TOKEN)]).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let record = loop {
        let (status, record) = gw.get(&format!("/v1/requests/{id}")).await;
        assert_eq!(status, 200, "{record}");
        if record["finished"] == true {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "not resumed in time: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = common::result(&record, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_resumed");
    assert!(common::warning(r, "code").contains("resent after a restart"), "{r}");
}

/// A vendor that echoes the credential in its error: neither the answer nor the ledger file
/// (with its write-ahead log) holds it.
#[tokio::test]
async fn no_credential_reaches_the_ledger() {
    let server = common::strict_server().await;
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({ "error": "unauthorized", "message": format!("token {TOKEN} is revoked") })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_files(dir.path(), &common::upstream("loop", "loop", &server.uri(), ""), &[]);
    let gw = serve_config(&path, &[("LOOP_TOKEN", TOKEN)]).await;

    let (status, body) = gw.create(&common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 502, "{body}");
    assert!(common::result(&body, "loop")["error"]["message"]
        .as_str()
        .unwrap()
        .contains("token [redacted] is revoked"));
    common::assert_hides(&body.to_string(), &[TOKEN]);

    let mut recorded = false;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("promo-gateway.db") {
            let bytes = std::fs::read(entry.path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(TOKEN), "{:?} holds the credential", entry.file_name());
            recorded |= text.contains("token [redacted] is revoked");
        }
    }
    assert!(recorded, "the redacted outcome is in the ledger");
}

/// A repeat whose failed target can no longer be sent (its credential was removed since) records
/// why, and the create is finished rather than left pending.
#[tokio::test]
async fn a_repeat_records_a_failed_target_that_can_no_longer_be_sent() {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    common::loop_create(TOKEN, common::loop_body("SPRING20"))
        .respond_with(common::loop_created("promo_a", "SPRING20"))
        .expect(1)
        .mount(&a)
        .await;
    common::loop_create(TOKEN2, common::loop_body("SPRING20"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&b)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = [
        common::upstream("loop", "loop", &a.uri(), ""),
        common::upstream("loop2", "loop", &b.uri(), ""),
    ]
    .join("\n");
    let path = common::write_files(dir.path(), &config, &[]);
    let body = common::percent20("SPRING20", &["loop", "loop2"]);

    let first = serve_config(&path, &[("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)]).await;
    let (status, _, answer) = create_with_key(&first, "k-5", &body).await;
    assert_eq!(status, 207, "{answer}");

    // The same ledger, served again without loop2's credential.
    let second = serve_config(&path, &[("LOOP_TOKEN", TOKEN)]).await;
    let (status, _, answer) = create_with_key(&second, "k-5", &body).await;
    assert_eq!(status, 207, "{answer}");
    assert_eq!(common::result(&answer, "loop")["vendor_id"], "promo_a");
    let r = common::result(&answer, "loop2");
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["error"]["kind"], "missing_credentials");

    let (_, record) = second.get(&format!("/v1/requests/{}", answer["request_id"])).await;
    assert_eq!(record["finished"], true, "{record}");
    assert_eq!(record["pending"], json!([]));
    assert_eq!(record["results"], answer["results"]);
}
