//! The ledger through the real router: idempotent repeats (a pure replay of the first answer),
//! the record of a create, targets already created never called again, and a create that a stop
//! interrupted being resent at the next start. Vendors are wiremock Loop servers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use promo_gateway::domain::code::Definition;
use promo_gateway::domain::request::{Begin, Claim, NewCreate, OpKind, PlannedTarget};
use promo_gateway::ports::Store;
use promo_gateway::store::sqlite::Ledger;
use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

const TOKEN: &str = "loop-ledger-secret-9f3b";
const TOKEN2: &str = "loop2-ledger-secret-c41d";

/// `loop` and `loop2`, two Loop upstreams on `a` and `b`.
fn two_loops_config(a: &MockServer, b: &MockServer) -> String {
    [
        common::upstream("loop", "loop", &a.uri(), ""),
        common::upstream("loop2", "loop", &b.uri(), ""),
    ]
    .join("\n")
}

/// Two Loop upstreams, `loop` and `loop2`, on their own strict servers.
async fn two_loops() -> (MockServer, MockServer, common::Gateway) {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    let gw = common::start(
        &two_loops_config(&a, &b),
        &[],
        &[("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)],
    )
    .await;
    (a, b, gw)
}

/// Serves the gateway on an existing config file (and so on the ledger beside it), with `env`.
async fn serve_config(path: &std::path::Path, env: &[(&str, &str)]) -> common::Gateway {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app_from_file(path, &|k: &str| env.get(k).cloned()).unwrap();
    common::serve(router).await
}

#[tokio::test]
async fn a_repeated_key_replays_the_answer_without_calling_again() {
    let (a, _b, gw) = two_loops().await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_1").await;
    let body = common::percent20("SPRING20", &["loop"]);

    let (status, replayed, first) = gw.create_with_key("k-1", &body).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(replayed, None);
    let id = first["request_id"].as_i64().expect("a request id");
    assert_eq!(common::result(&first, "loop")["vendor_id"], "promo_1");
    assert_eq!(common::result(&first, "loop")["attempts"], 1);

    for _ in 0..2 {
        let (status, replayed, again) = gw.create_with_key("k-1", &body).await;
        assert_eq!(status, 201, "{again}");
        assert_eq!(replayed.as_deref(), Some("true"));
        assert_eq!(again, first, "a replay answers exactly what the first create answered");
        assert_eq!(again["request_id"], id);
    }
    common::assert_calls(&a, 1, "one create, two replays").await;
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_refused_and_sends_nothing() {
    let (a, _b, gw) = two_loops().await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_1").await;
    common::loop_create(TOKEN, common::loop_body("SUMMER20"))
        .respond_with(common::loop_created("promo_2", "SUMMER20"))
        .expect(0)
        .mount(&a)
        .await;
    let (status, _, first) = gw
        .create_with_key("k-2", &common::percent20("SPRING20", &["loop"]))
        .await;
    assert_eq!(status, 201, "{first}");

    let (status, replayed, problem) = gw
        .create_with_key("k-2", &common::percent20("SUMMER20", &["loop"]))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(replayed, None);
    assert_eq!(problem["type"], "urn:promo-gateway:problem:idempotency-key-reused");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("request {}", first["request_id"])));

    // Refused before anything was written: the ledger does not hold SUMMER20.
    let (status, missing) = gw.get("/v1/promo-codes/SUMMER20").await;
    assert_eq!(status, 404, "{missing}");
}

/// A repeat with the same key replays the first answer, failure included, and calls nobody. A new
/// request for the same code (no key, or another key) sends only the target that failed: `loop`
/// was created and is never called again.
#[tokio::test]
async fn a_repeat_replays_the_failure_and_a_new_request_sends_only_the_failed_target() {
    let (a, b, gw) = two_loops().await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_failure_then_created(
        &b,
        TOKEN2,
        "SPRING20",
        ResponseTemplate::new(500).set_body_json(json!({ "error": "internal", "message": "boom" })),
        "promo_b",
    )
    .await;
    let body = common::percent20("SPRING20", &["loop", "loop2"]);

    let (status, _, first) = gw.create_with_key("k-3", &body).await;
    assert_eq!(status, 207, "{first}");
    assert_eq!(common::result(&first, "loop")["status"], "created");
    let failed = common::result(&first, "loop2");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["kind"], "upstream_error");
    assert_eq!(failed["error"]["http_status"], 500);

    // The same key: the first answer, failure and all, and no call.
    let (status, replayed, second) = gw.create_with_key("k-3", &body).await;
    assert_eq!((status, replayed.as_deref()), (207, Some("true")), "{second}");
    assert_eq!(second, first);
    common::assert_calls(&a, 1, "after the replay").await;
    common::assert_calls(&b, 1, "after the replay").await;

    // A new request (no key): only loop2 is sent.
    let (status, third) = gw.create(&body).await;
    assert_eq!(status, 201, "{third}");
    assert_ne!(third["request_id"], first["request_id"], "a new request");
    let r = common::result(&third, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_a");
    assert_eq!(r["attempts"], 0, "{r}");
    let w = common::warning(r, "code");
    assert!(
        w.contains("already created on loop") && w.contains("not sent again"),
        "{w}"
    );
    let r = common::result(&third, "loop2");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_b");
    assert_eq!(r["attempts"], 1);
    assert!(r.get("error").is_none(), "{r}");
    common::assert_calls(&a, 1, "after the new request").await;
    common::assert_calls(&b, 2, "after the new request").await;

    // Another key: both are created already, nothing is sent.
    let (status, replayed, fourth) = gw.create_with_key("k-3b", &body).await;
    assert_eq!((status, replayed), (201, None), "{fourth}");
    for (upstream, id) in [("loop", "promo_a"), ("loop2", "promo_b")] {
        let r = common::result(&fourth, upstream);
        assert_eq!(
            (&r["status"], &r["vendor_id"], &r["attempts"]),
            (&json!("created"), &json!(id), &json!(0))
        );
        assert!(common::warning(r, "code").contains("not sent again"), "{r}");
    }

    // And the first key still replays its own first answer.
    let (status, replayed, fifth) = gw.create_with_key("k-3", &body).await;
    assert_eq!((status, replayed.as_deref()), (207, Some("true")));
    assert_eq!(fifth, first);
    common::assert_calls(&a, 1, "in the end").await;
    common::assert_calls(&b, 2, "in the end").await;

    let (status, record) = gw.get("/v1/promo-codes/SPRING20").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["deliveries"]["loop"]["vendor_id"], "promo_a");
    assert_eq!(record["deliveries"]["loop2"]["status"], "created");
    assert_eq!(record["deliveries"]["loop2"]["vendor_id"], "promo_b");
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_flight_gets_409() {
    let (a, _b, gw) = two_loops().await;
    common::expect_loop_answer(
        &a,
        TOKEN,
        "SPRING20",
        common::loop_created("promo_1", "SPRING20").set_delay(Duration::from_millis(600)),
    )
    .await;
    let body = common::percent20("SPRING20", &["loop"]);
    let (first, second) = tokio::join!(gw.create_with_key("k-4", &body), async {
        common::wait_for_requests(&a, 1).await;
        gw.create_with_key("k-4", &body).await
    });
    assert_eq!(first.0, 201, "{}", first.2);
    assert_eq!(second.0, 409, "{}", second.2);
    assert_eq!(second.2["type"], "urn:promo-gateway:problem:idempotency-in-progress");
    assert_eq!(second.2["errors"][0]["field"], "Idempotency-Key");
    assert!(second.2["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("request {}", first.2["request_id"])));

    // Once it has finished, the key replays it.
    let (status, replayed, third) = gw.create_with_key("k-4", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")));
    assert_eq!(third, first.2);
    common::assert_calls(&a, 1, "one create").await;
}

#[tokio::test]
async fn malformed_keys_are_refused_and_send_nothing() {
    let (a, b, gw) = two_loops().await;
    let body = common::percent20("SPRING20", &["loop"]);
    for key in ["", "has space", "tab\there", &"k".repeat(256)] {
        let (status, _, problem) = gw.create_with_key(key, &body).await;
        assert_eq!(status, 400, "{key:?}: {problem}");
        assert_eq!(problem["type"], "urn:promo-gateway:problem:bad-idempotency-key");
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key", "{problem}");
    }
    common::assert_calls(&a, 0, "refused keys").await;
    common::assert_calls(&b, 0, "refused keys").await;
    let (status, missing) = gw.get("/v1/promo-codes/SPRING20").await;
    assert_eq!(status, 404, "nothing recorded: {missing}");
}

#[tokio::test]
async fn the_record_of_a_create_can_be_read_back() {
    let (a, b, gw) = two_loops().await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_1").await;
    common::expect_loop_answer(&b, TOKEN2, "SPRING20", ResponseTemplate::new(500)).await;
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
    assert!(record["received_at"].is_string(), "{record}");

    for missing in ["/v1/requests/999", "/v1/requests/abc"] {
        let raw = gw.get_raw(missing).await;
        assert_eq!(raw.status, 404, "{missing}: {}", raw.text);
        assert_eq!(raw.content_type, "application/problem+json");
        let problem: Value = serde_json::from_str(&raw.text).unwrap();
        assert_eq!(problem["type"], "urn:promo-gateway:problem:not-found");
    }
}

/// The state a stop mid-delivery leaves (built through the ledger's own API): a create recorded
/// with an idempotency key, `loop` answered and recorded, `loop2` still pending. The next start
/// sends `loop2` only, records it with a warning that it was resent, and stores the answer,
/// which the key then replays.
#[tokio::test]
async fn a_create_interrupted_by_a_stop_is_resent_at_the_next_start() {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    common::loop_endpoint()
        .respond_with(common::loop_created("promo_twice", "SPRING20"))
        .expect(0)
        .named("loop answered before the stop")
        .mount(&a)
        .await;
    common::expect_loop_created(&b, TOKEN2, "SPRING20", "promo_resumed").await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_files(dir.path(), &two_loops_config(&a, &b), &[]);
    let body = common::percent20("SPRING20", &["loop", "loop2"]);

    let ledger = Ledger::open(&dir.path().join("promo-gateway.db")).unwrap();
    let begun = ledger
        .begin_create(NewCreate {
            key: Some("k-crash".into()),
            body: body.clone(),
            definition: Definition::of(&body, None, "SPRING20"),
            targets: ["loop", "loop2"]
                .map(|t| PlannedTarget {
                    upstream: t.into(),
                    settled: None,
                })
                .into(),
            requested_by: None,
            now: chrono::Utc::now(),
            key_window: chrono::Duration::hours(24),
        })
        .await
        .unwrap();
    let Begin::New {
        request_id: id,
        code_id,
        claims,
    } = begun
    else {
        panic!("a fresh ledger begins a new create, got {begun:?}");
    };
    assert!(claims.iter().all(|c| matches!(c, Claim::Send)), "{claims:?}");
    let answered = serde_json::from_value(json!({
        "upstream": "loop", "vendor": "loop", "status": "created", "vendor_id": "promo_before",
        "warnings": [], "attempts": 1
    }))
    .unwrap();
    ledger.record(OpKind::Create, vec![(code_id, answered)]).await.unwrap();
    drop(ledger);

    let gw = serve_config(&path, &[("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)]).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let record = loop {
        let (status, record) = gw.get(&format!("/v1/requests/{id}")).await;
        assert_eq!(status, 200, "{record}");
        if record["finished"] == true {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "not resumed in time: {record}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record["pending"], json!([]));
    let r = common::result(&record, "loop2");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_resumed");
    assert_eq!(r["attempts"], 1);
    assert!(common::warning(r, "code").contains("resent after a restart"), "{r}");
    let r = common::result(&record, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_before", "answered before the stop: not resent");
    assert_eq!(r["warnings"], json!([]));
    common::assert_calls(&a, 0, "loop, answered before the stop").await;
    common::assert_calls(&b, 1, "loop2, pending at the stop").await;

    // The stored answer is what the key replays.
    let (status, replayed, answer) = gw.create_with_key("k-crash", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")), "{answer}");
    assert_eq!(answer["request_id"], id);
    assert_eq!(answer["code"], "SPRING20");
    assert_eq!(answer["results"], record["results"]);
    common::assert_calls(&b, 1, "after the replay").await;

    let (status, code) = gw.get("/v1/promo-codes/spring20").await;
    assert_eq!(status, 200, "{code}");
    assert_eq!(code["deliveries"]["loop"]["vendor_id"], "promo_before");
    assert_eq!(code["deliveries"]["loop2"]["status"], "created");
    assert_eq!(code["deliveries"]["loop2"]["vendor_id"], "promo_resumed");
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
    let (_, record) = gw.get("/v1/promo-codes/SPRING20").await;
    common::assert_hides(&record.to_string(), &[TOKEN]);

    let mut recorded = false;
    for (name, bytes) in common::ledger::ledger_files(dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TOKEN), "{name} holds the credential");
        recorded |= text.contains("token [redacted] is revoked");
    }
    assert!(recorded, "the redacted outcome is in the ledger");
}

/// After a restart without loop2's credential: the first key still replays its first answer
/// (calling nothing), and a new request for the code records why loop2 can no longer be sent
/// (loop, created, is not called again); the create is finished rather than left pending.
#[tokio::test]
async fn a_new_request_records_a_failed_target_that_can_no_longer_be_sent() {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_answer(&b, TOKEN2, "SPRING20", ResponseTemplate::new(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_files(dir.path(), &two_loops_config(&a, &b), &[]);
    let body = common::percent20("SPRING20", &["loop", "loop2"]);

    let first = serve_config(&path, &[("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)]).await;
    let (status, _, answer) = first.create_with_key("k-5", &body).await;
    assert_eq!(status, 207, "{answer}");
    assert_eq!(common::result(&answer, "loop2")["status"], "failed");

    // The same ledger, served again without loop2's credential.
    let second = serve_config(&path, &[("LOOP_TOKEN", TOKEN)]).await;
    let (status, replayed, replay) = second.create_with_key("k-5", &body).await;
    assert_eq!((status, replayed.as_deref()), (207, Some("true")), "{replay}");
    assert_eq!(replay, answer, "the key survives the restart");

    let (status, again) = second.create(&body).await;
    assert_eq!(status, 207, "{again}");
    let r = common::result(&again, "loop");
    assert_eq!(
        (&r["status"], &r["vendor_id"], &r["attempts"]),
        (&json!("created"), &json!("promo_a"), &json!(0))
    );
    assert!(common::warning(r, "code").contains("not sent again"), "{r}");
    let r = common::result(&again, "loop2");
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["error"]["kind"], "missing_credentials");
    assert!(r["error"]["message"].as_str().unwrap().contains("LOOP2_TOKEN"), "{r}");

    let (_, record) = second.get(&format!("/v1/requests/{}", again["request_id"])).await;
    assert_eq!(record["finished"], true, "{record}");
    assert_eq!(record["pending"], json!([]));
    assert_eq!(record["results"], again["results"]);
    let (_, code) = second.get("/v1/promo-codes/SPRING20").await;
    assert_eq!(code["deliveries"]["loop2"]["status"], "unconfigured", "{code}");
    common::assert_calls(&a, 1, "loop").await;
    common::assert_calls(&b, 1, "loop2").await;
}
