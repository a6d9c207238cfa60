//! `POST /v1/promo-codes/{code}/revoke` through the real router, against wiremock upstreams that
//! check the exact revoke call each lifecycle document requires
//! (shared/vendor-docs/lifecycle/): Spacebring's archive, Partnero's delete, Moltin's delete.
//! Each server is strict: a call not mounted fails the test, so "no call" is asserted too.

mod common;

use common::{jobs, result};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const COUPON: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";
const NETWORK: &str = "0c9e6f1a-2b3d-4e5f-8a7b-6c5d4e3f2a1b";
const SB_ID: &str = "9b2f4c1e-7a6d-4e8f-b3c2-1d0e9f8a7b6c";
const PARTNERO_COUPON: &str = "coupon_123";

const ENV: &[(&str, &str)] = &[
    ("SPACEBRING_TOKEN", "sb-token"),
    ("MOLTIN_TOKEN", "moltin-token"),
    ("PARTNERO_TOKEN", "partnero-token"),
];

struct Vendors {
    sb: MockServer,
    moltin: MockServer,
    partnero: MockServer,
}

fn mapping() -> String {
    format!(
        "[upstreams.spacebring]\ncoupon_ref = \"{COUPON}\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.partnero]\ncoupon_uuid = \"{PARTNERO_COUPON}\"\ndiscount = {{ percent_off = 20 }}\n"
    )
}

async fn setup() -> (Vendors, common::Gateway) {
    let v = Vendors {
        sb: common::strict_server().await,
        moltin: common::strict_server().await,
        partnero: common::strict_server().await,
    };
    let config = format!(
        "{}\n{}\n{}",
        common::upstream(
            "spacebring",
            "spacebring",
            &v.sb.uri(),
            &format!("network_id = \"{NETWORK}\"")
        ),
        common::upstream("moltin", "moltin", &v.moltin.uri(), ""),
        common::upstream("partnero", "partnero", &v.partnero.uri(), ""),
    );
    let map = mapping();
    let gw = common::start(&config, &[("spring", map.as_str())], ENV).await;
    (v, gw)
}

fn code(name: &str) -> Value {
    json!({ "code": name, "campaign": "spring", "discount": { "percent_off": 20 } })
}

/// Creates `name` on the three vendors (each create answered as documented, once).
async fn created(v: &Vendors, gw: &common::Gateway, name: &str) {
    common::spacebring_endpoint()
        .respond_with(common::spacebring_created(SB_ID, name, COUPON, NETWORK))
        .up_to_n_times(1)
        .mount(&v.sb)
        .await;
    common::moltin_endpoint(PROMOTION)
        .respond_with(common::moltin_created(PROMOTION))
        .up_to_n_times(1)
        .mount(&v.moltin)
        .await;
    common::partnero_endpoint()
        .respond_with(common::partnero_created(name))
        .up_to_n_times(1)
        .mount(&v.partnero)
        .await;
    let (status, body) = gw.create(&code(name)).await;
    assert_eq!(status, 201, "{body}");
}

/// The three documented revoke calls, each expected exactly once.
async fn expect_revokes(v: &Vendors, name: &str) {
    // lifecycle/spacebring.md §3: PUT …/{id}/archive, no body, the network header.
    Mock::given(method("PUT"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}/archive")))
        .and(header("Authorization", "Bearer sb-token"))
        .and(header("spacebring-network-id", NETWORK))
        .and(|r: &Request| r.body.is_empty() && !r.headers.contains_key("content-type"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promocode": { "id": SB_ID, "code": name, "couponRef": COUPON, "archiveDate": "2026-12-07T10:00:00Z" }
        })))
        .expect(1)
        .mount(&v.sb)
        .await;
    // lifecycle/moltin.md §6: DELETE /v2/promotions/:promotionID/codes/:code, no body, 204.
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes/{name}")))
        .and(header("Authorization", "Bearer moltin-token"))
        .and(|r: &Request| r.body.is_empty())
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&v.moltin)
        .await;
    // lifecycle/partnero.md §5: DELETE /v1/promotion-codes with {code, coupon:{uuid_code}}.
    Mock::given(method("DELETE"))
        .and(path("/v1/promotion-codes"))
        .and(header("Authorization", "Bearer partnero-token"))
        .and(header("Content-Type", "application/json"))
        .and(header("Accept", "application/json"))
        .and(body_json(
            json!({ "code": name, "coupon": { "uuid_code": PARTNERO_COUPON } }),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "data": { "status": 1, "message": "deleted" } })),
        )
        .expect(1)
        .mount(&v.partnero)
        .await;
}

async fn revoke(gw: &common::Gateway, name: &str, body: Value) -> (u16, Value) {
    gw.post(&format!("/v1/promo-codes/{name}/revoke"), body.to_string())
        .await
}

fn calls_of(requests: &[Request], verb: &str) -> usize {
    requests.iter().filter(|r| r.method.as_str() == verb).count()
}

#[tokio::test]
async fn a_revoke_makes_each_documented_call_once_and_a_repeat_makes_none() {
    let (v, gw) = setup().await;
    created(&v, &gw, "LEAKED-1").await;
    expect_revokes(&v, "LEAKED-1").await;

    let (status, body) = revoke(&gw, "leaked-1", json!({ "campaign": "spring", "delete": true })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "LEAKED-1");
    assert!(body["revoked_at"].is_string(), "{body}");
    let sb = result(&body, "spacebring");
    assert_eq!(
        (sb["status"].as_str(), sb["action"].as_str()),
        (Some("revoked"), Some("archived"))
    );
    assert!(
        common::warning(sb, "delete").contains("cannot delete, archived"),
        "{sb}"
    );
    for target in ["moltin", "partnero"] {
        let r = result(&body, target);
        assert_eq!(
            (r["status"].as_str(), r["action"].as_str()),
            (Some("revoked"), Some("deleted")),
            "{r}"
        );
        assert_eq!(r["attempts"], 1);
    }

    // The repeat: every target already revoked, and no call (the mocks expect one each).
    let (status, again) = revoke(&gw, "LEAKED-1", json!({ "campaign": "spring", "delete": true })).await;
    assert_eq!(status, 200, "{again}");
    for target in ["spacebring", "moltin", "partnero"] {
        let r = result(&again, target);
        assert_eq!(r["status"], "already_revoked", "{r}");
        assert_eq!(r["attempts"], 0);
    }

    // The ledger shows it, and refuses to create the code again.
    let (_, record) = gw.get("/v1/promo-codes/LEAKED-1?campaign=spring").await;
    assert_eq!(record["revoked_at"], body["revoked_at"]);
    assert_eq!(record["revocations"]["moltin"]["status"], "revoked");
    let (status, problem) = gw.create(&code("LEAKED-1")).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["conflict"]["kind"], "revoked");
    assert_eq!(problem["conflict"]["revoked_at"], body["revoked_at"]);
    for server in [&v.sb, &v.moltin, &v.partnero] {
        let requests = server.received_requests().await.unwrap();
        assert_eq!(calls_of(&requests, "POST"), 1, "one create each, none after the revoke");
    }
}

#[tokio::test]
async fn without_delete_the_vendors_that_only_delete_are_unsupported_and_not_called() {
    let (v, gw) = setup().await;
    created(&v, &gw, "SOFT-1").await;
    Mock::given(method("PUT"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}/archive")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promocode": { "id": SB_ID, "code": "SOFT-1", "archiveDate": "2026-12-07T10:00:00Z" }
        })))
        .expect(1)
        .mount(&v.sb)
        .await;
    let (status, body) = revoke(&gw, "SOFT-1", json!({ "campaign": "spring" })).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(result(&body, "spacebring")["status"], "revoked");
    for target in ["moltin", "partnero"] {
        let r = result(&body, target);
        assert_eq!(r["status"], "unsupported", "{r}");
        assert_eq!(r["error"]["kind"], "unsupported_operation");
        assert!(r["error"]["message"].as_str().unwrap().contains("delete: true"), "{r}");
        assert_eq!(r["attempts"], 0);
    }
    // Unsupported is not revoked: a later hard revoke still reaches them.
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes/SOFT-1")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&v.moltin)
        .await;
    let (status, body) = revoke(
        &gw,
        "SOFT-1",
        json!({ "campaign": "spring", "targets": ["moltin"], "delete": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body, "moltin")["status"], "revoked");
}

#[tokio::test]
async fn a_dry_run_shows_each_exact_request_and_changes_nothing() {
    let (v, gw) = setup().await;
    created(&v, &gw, "DRY-1").await;
    let (status, body) = gw
        .post(
            "/v1/promo-codes/DRY-1/revoke?dry_run=true",
            json!({ "campaign": "spring", "delete": true }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    let sb = &result(&body, "spacebring")["request"];
    assert_eq!(sb["method"], "PUT");
    assert_eq!(
        sb["url"],
        format!("{}/discounts/promocodes/v1/{SB_ID}/archive", v.sb.uri())
    );
    assert!(sb.get("body").is_none(), "{sb}");
    let p = &result(&body, "partnero")["request"];
    assert_eq!(p["method"], "DELETE");
    assert_eq!(
        p["body"],
        json!({ "code": "DRY-1", "coupon": { "uuid_code": PARTNERO_COUPON } })
    );
    assert!(!p["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .contains("partnero-token"));
    assert_eq!(result(&body, "moltin")["status"], "would_send");
    // Nothing recorded: the code is not revoked and creates it again (no call: it is there).
    let (_, record) = gw.get("/v1/promo-codes/DRY-1?campaign=spring").await;
    assert!(record.get("revoked_at").is_none(), "{record}");
    for server in [&v.sb, &v.moltin, &v.partnero] {
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "only the create");
    }
}

#[tokio::test]
async fn a_vendor_404_is_not_found_never_revoked_and_an_unknown_code_is_404() {
    let (v, gw) = setup().await;
    created(&v, &gw, "GONE-1").await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes/GONE-1")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "errors": [{ "status": 404, "title": "Not Found", "detail": "promotion code not found" }]
        })))
        .expect(1)
        .mount(&v.moltin)
        .await;
    let (status, body) = revoke(
        &gw,
        "GONE-1",
        json!({ "campaign": "spring", "targets": ["moltin"], "delete": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = result(&body, "moltin");
    assert_eq!(r["status"], "not_found", "{r}");
    assert_eq!(r["error"]["kind"], "not_found_at_vendor");
    assert!(r.get("action").is_none(), "{r}");

    let (status, problem) = revoke(&gw, "NEVER-MADE", json!({ "campaign": "spring" })).await;
    assert_eq!(status, 404, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("NEVER-MADE"), "{problem}");
}

#[tokio::test]
async fn bad_revoke_bodies_name_the_field_and_change_nothing() {
    let (v, gw) = setup().await;
    created(&v, &gw, "BAD-1").await;
    for (body, field) in [
        (json!({ "campaign": "spring", "delet": true }), "delet"),
        (json!({ "campaign": "spring", "delete": "yes" }), "delete"),
        (json!({ "campaign": "spring", "targets": [] }), "targets"),
        (json!({ "campaign": "spring", "targets": ["nowhere"] }), "targets[0]"),
        (
            json!({ "campaign": "spring", "targets": ["moltin", "moltin"] }),
            "targets[1]",
        ),
        (json!({ "campaign": 7 }), "campaign"),
    ] {
        let (status, problem) = revoke(&gw, "BAD-1", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let (_, record) = gw.get("/v1/promo-codes/BAD-1?campaign=spring").await;
    assert!(record.get("revoked_at").is_none(), "{record}");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_revoke() {
    let (v, gw) = setup().await;
    created(&v, &gw, "KEYED-1").await;
    expect_revokes(&v, "KEYED-1").await;
    let send = || async {
        gw.http
            .post(format!("{}/v1/promo-codes/KEYED-1/revoke", gw.base))
            .header("Idempotency-Key", "leak-2026-12-07")
            .body(json!({ "campaign": "spring", "delete": true }).to_string())
            .send()
            .await
            .unwrap()
    };
    let first = send().await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let second = send().await;
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    // The same key for another code is refused.
    created(&v, &gw, "KEYED-2").await;
    let (status, problem) = {
        let r = gw
            .http
            .post(format!("{}/v1/promo-codes/KEYED-2/revoke", gw.base))
            .header("Idempotency-Key", "leak-2026-12-07")
            .body(json!({ "campaign": "spring", "delete": true }).to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 422, "{problem}");
}

#[tokio::test]
async fn no_job_or_mirror_sends_a_revoked_code_again() {
    let (v, gw) = setup().await;
    // On Spacebring only, then revoked there.
    common::spacebring_endpoint()
        .respond_with(common::spacebring_created(SB_ID, "MIRRORED-1", COUPON, NETWORK))
        .expect(1)
        .mount(&v.sb)
        .await;
    let mut body = code("MIRRORED-1");
    body["targets"] = json!(["spacebring"]);
    let (status, answer) = gw.create(&body).await;
    assert_eq!(status, 201, "{answer}");
    Mock::given(method("PUT"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}/archive")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promocode": { "id": SB_ID, "code": "MIRRORED-1", "archiveDate": "2026-12-07T10:00:00Z" }
        })))
        .expect(1)
        .mount(&v.sb)
        .await;
    let (status, answer) = revoke(&gw, "MIRRORED-1", json!({ "campaign": "spring" })).await;
    assert_eq!(status, 200, "{answer}");

    // A mirror of the campaign to Moltin has nothing to send.
    let id = jobs::start_job(&gw, &json!({ "mirror": { "campaign": "spring", "to": ["moltin"] } })).await;
    let job = jobs::wait_done(&gw, id, std::time::Duration::from_secs(10)).await;
    assert_eq!(job["total"], 0, "{job}");

    // A job that names the code delivers it nowhere: its deliveries end cancelled, revoked.
    let id = jobs::start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["moltin", "partnero"], "codes": ["MIRRORED-1"],
                 "template": { "discount": { "percent_off": 20 } } }),
    )
    .await;
    jobs::wait_done(&gw, id, std::time::Duration::from_secs(10)).await;
    let results = jobs::all_results(&gw, id, "").await;
    assert_eq!(results.len(), 2, "{results:?}");
    for r in &results {
        assert_eq!(r["status"], "cancelled", "{r}");
        assert_eq!(r["error"]["kind"], "revoked", "{r}");
    }
    // The strict Moltin and Partnero servers received nothing.
    assert_eq!(v.moltin.received_requests().await.unwrap().len(), 0);
    assert_eq!(v.partnero.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn the_api_key_that_asked_is_recorded_as_requested_by() {
    let v = Vendors {
        sb: common::strict_server().await,
        moltin: common::strict_server().await,
        partnero: common::strict_server().await,
    };
    // Keys are configured after the upstreams' tables, as `[[server.api_keys]]`.
    let config = format!(
        "{}\n{}\n{}\n[[server.api_keys]]\nname = \"incident-bot\"\nkey_env = \"GW_REVOKE_KEY\"\nscopes = [\"promo-codes:write\", \"promo-codes:read\"]\n",
        common::upstream("spacebring", "spacebring", &v.sb.uri(), &format!("network_id = \"{NETWORK}\"")),
        common::upstream("moltin", "moltin", &v.moltin.uri(), ""),
        common::upstream("partnero", "partnero", &v.partnero.uri(), ""),
    );
    let map = mapping();
    let mut env = ENV.to_vec();
    env.push(("GW_REVOKE_KEY", "gw-revoke-secret-0f3a"));
    let gw = common::start(&config, &[("spring", map.as_str())], &env).await;
    let post = |path: String, body: Value| {
        gw.http
            .post(format!("{}{path}", gw.base))
            .bearer_auth("gw-revoke-secret-0f3a")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    common::spacebring_endpoint()
        .respond_with(common::spacebring_created(SB_ID, "WHO-1", COUPON, NETWORK))
        .expect(1)
        .mount(&v.sb)
        .await;
    let mut create = code("WHO-1");
    create["targets"] = json!(["spacebring"]);
    let created = post("/v1/promo-codes".into(), create).await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    Mock::given(method("PUT"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}/archive")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promocode": { "id": SB_ID, "code": "WHO-1", "archiveDate": "2026-12-07T10:00:00Z" }
        })))
        .expect(1)
        .mount(&v.sb)
        .await;
    let revoked = post(
        "/v1/promo-codes/WHO-1/revoke".into(),
        json!({ "campaign": "spring", "targets": ["spacebring"] }),
    )
    .await
    .unwrap();
    assert_eq!(revoked.status(), 200);
    let revoked: Value = revoked.json().await.unwrap();
    assert_eq!(revoked["requested_by"], "incident-bot", "{revoked}");
    for id in [&created["request_id"], &revoked["request_id"]] {
        let stored: Value = gw
            .http
            .get(format!("{}/v1/requests/{id}", gw.base))
            .bearer_auth("gw-revoke-secret-0f3a")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stored["requested_by"], "incident-bot", "{stored}");
    }
    // The key never appears in what the gateway answered.
    assert!(!revoked.to_string().contains("gw-revoke-secret"));
}

#[tokio::test]
async fn a_revoke_racing_a_create_waits_for_its_outcome_then_revokes_what_it_made() {
    let (v, gw) = setup().await;
    // The create's call is in flight for a while when the revoke arrives.
    common::spacebring_endpoint()
        .respond_with(
            common::spacebring_created(SB_ID, "RACE-1", COUPON, NETWORK)
                .set_delay(std::time::Duration::from_millis(600)),
        )
        .expect(1)
        .mount(&v.sb)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}/archive")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promocode": { "id": SB_ID, "code": "RACE-1", "archiveDate": "2026-12-07T10:00:00Z" }
        })))
        .expect(1)
        .mount(&v.sb)
        .await;
    let mut body = code("RACE-1");
    body["targets"] = json!(["spacebring"]);
    let create = gw.create(&body);
    let revoke = async {
        common::wait_for_requests(&v.sb, 1).await;
        revoke(&gw, "RACE-1", json!({ "campaign": "spring" })).await
    };
    let ((created, c), (revoked, r)) = tokio::join!(create, revoke);
    assert_eq!(created, 201, "{c}");
    assert_eq!(revoked, 200, "{r}");
    let sb = result(&r, "spacebring");
    assert_eq!(
        (sb["status"].as_str(), sb["attempts"].as_u64()),
        (Some("revoked"), Some(1)),
        "{sb}"
    );
    // A second create of it is refused; the ledger holds both operations' outcomes.
    let (status, _) = gw.create(&body).await;
    assert_eq!(status, 409);
    let (_, record) = gw.get("/v1/promo-codes/RACE-1?campaign=spring").await;
    assert_eq!(record["deliveries"]["spacebring"]["status"], "created", "{record}");
    assert_eq!(record["revocations"]["spacebring"]["status"], "revoked", "{record}");
}
