//! Spacebring (`POST /discounts/promocodes/v1`) and Moltin (`POST /v2/promotions/:id/codes`)
//! through the real router, against wiremock upstreams that check the exact request each vendor
//! document (shared/vendor-docs/spacebring-create-promocode.md,
//! shared/vendor-docs/moltin-create-promotion-codes.md) requires.

mod common;

use common::warning_fields;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_string_contains, header};
use wiremock::{MockBuilder, MockServer, ResponseTemplate};

/// The Spacebring coupon and Moltin promotion every campaign here attaches to.
const COUPON: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";
const NETWORK: &str = "0c9e6f1a-2b3d-4e5f-8a7b-6c5d4e3f2a1b";
/// The id Spacebring gives the created promocode.
const SB_ID: &str = "9b2f4c1e-7a6d-4e8f-b3c2-1d0e9f8a7b6c";

/// `base64("key_live_123:s3cret")`, computed outside the code under test.
const SB_BASIC: &str = "Basic a2V5X2xpdmVfMTIzOnMzY3JldA==";
const MOLTIN_BEARER: &str = "Bearer moltin-token";

const SB_BASIC_AUTH: &str = r#"auth = { scheme = "basic", username_env = "SB_KEY", password_env = "SB_SECRET" }"#;

const ENV: &[(&str, &str)] = &[
    ("SB_KEY", "key_live_123"),
    ("SB_SECRET", "s3cret"),
    ("MOLTIN_TOKEN", "moltin-token"),
    ("SB_CLIENT_ID", "sb-client"),
    ("SB_CLIENT_SECRET", "sb-client-secret"),
];

/// A campaign mapping both upstreams, each parent granting `discount` (TOML inline table).
fn campaign(discount: &str) -> String {
    format!(
        "[upstreams.spacebring]\ncoupon_ref = \"{COUPON}\"\ndiscount = {discount}\n\n\
         [upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {discount}\n"
    )
}

const PERCENT: &str = "{ percent_off = 20 }";
const AMOUNT: &str = "{ amount_off = 900, currency = \"USD\" }";

/// Campaigns: `pct` (20 % off), `amt` (9.00 USD off), and two that each lack one vendor's key.
fn campaigns() -> Vec<(&'static str, String)> {
    vec![
        ("pct", campaign(PERCENT)),
        ("amt", campaign(AMOUNT)),
        (
            "no-coupon-ref",
            format!(
                "[upstreams.spacebring]\ndiscount = {PERCENT}\n\n\
                 [upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {PERCENT}\n"
            ),
        ),
        (
            "no-promotion-id",
            format!(
                "[upstreams.spacebring]\ncoupon_ref = \"{COUPON}\"\ndiscount = {PERCENT}\n\n\
                 [upstreams.moltin]\ndiscount = {PERCENT}\n"
            ),
        ),
    ]
}

/// The Spacebring and Moltin servers, each failing the test on any call not mocked on it.
async fn servers() -> (MockServer, MockServer) {
    (common::strict_server().await, common::strict_server().await)
}

/// The gateway with `spacebring` (Basic auth unless `sb_extra` says otherwise) and `moltin`
/// (bearer `MOLTIN_TOKEN`) pointing at the two mock servers.
async fn gateway_with(sb: &MockServer, moltin: &MockServer, sb_extra: &str) -> common::Gateway {
    let config = format!(
        "{}\n{}",
        common::upstream("spacebring", "spacebring", &sb.uri(), sb_extra),
        common::upstream("moltin", "moltin", &moltin.uri(), "")
    );
    let maps = campaigns();
    let maps: Vec<(&str, &str)> = maps.iter().map(|(n, t)| (*n, t.as_str())).collect();
    common::start(&config, &maps, ENV).await
}

async fn gateway(sb: &MockServer, moltin: &MockServer) -> common::Gateway {
    gateway_with(sb, moltin, SB_BASIC_AUTH).await
}

/// The body Spacebring documents for a code with no limits.
fn sb_body(code: &str) -> Value {
    json!({
        "promocode": {
            "code": code,
            "couponRef": COUPON,
            "expiration": { "enabled": false },
            "limitByFirstPurchase": false,
            "limitedRedemption": { "enabled": false, "value": 0 }
        }
    })
}

/// Spacebring's documented 201 answer.
fn sb_created(code: &str) -> ResponseTemplate {
    common::spacebring_created(SB_ID, code, COUPON, NETWORK)
}

/// Spacebring's create endpoint, whatever the headers and body.
fn sb_endpoint() -> MockBuilder {
    common::spacebring_endpoint()
}

/// Moltin's create endpoint for the campaigns' promotion, whatever the headers and body.
fn moltin_endpoint() -> MockBuilder {
    common::moltin_endpoint(PROMOTION)
}

/// The request for a 20%-off `code` in campaign `pct`, sent to `target` alone.
fn pct(code: &str, target: &str) -> Value {
    json!({ "code": code, "campaign": "pct", "discount": { "percent_off": 20 }, "targets": [target] })
}

fn moltin_body(codes: Value) -> Value {
    json!({ "data": { "type": "promotion_codes", "codes": codes } })
}

/// Expects exactly one Spacebring create with Basic auth, `Content-Type: application/json` and `body`.
async fn expect_sb_create(server: &MockServer, body: Value, code: &str) {
    sb_endpoint()
        .and(header("Authorization", SB_BASIC))
        .and(header("Content-Type", "application/json"))
        .and(body_json(body))
        .respond_with(sb_created(code))
        .expect(1)
        .mount(server)
        .await;
}

/// Expects exactly one Moltin create with the bearer token, `Content-Type: application/json` and `body`.
async fn expect_moltin_create(server: &MockServer, body: Value) {
    moltin_endpoint()
        .and(header("Authorization", MOLTIN_BEARER))
        .and(header("Content-Type", "application/json"))
        .and(body_json(body))
        .respond_with(common::moltin_created(PROMOTION))
        .expect(1)
        .mount(server)
        .await;
}

fn assert_created(body: &Value, upstream: &str, vendor_id: &str) {
    let r = common::result(body, upstream);
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], vendor_id, "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert!(r.get("error").is_none(), "{r}");
}

// ---------------------------------------------------------------------------------------------
// Spacebring
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn spacebring_percent_code_sends_the_documented_body_and_reads_the_promocode_id() {
    let (sb, moltin) = servers().await;
    expect_sb_create(&sb, sb_body("SPRING20"), "SPRING20").await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "SPRING20", "campaign": "pct", "discount": { "percent_off": 20 },
            "targets": ["spacebring"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["code"], "SPRING20");
    assert_eq!(body["dry_run"], false);
    assert_created(&body, "spacebring", SB_ID);
    let r = common::result(&body, "spacebring");
    assert_eq!(r["vendor"], "spacebring");
    assert_eq!(r["warnings"], json!([]));
    // Basic auth with no network id configured: no spacebring-network-id header.
    let received = sb.received_requests().await.unwrap();
    assert!(received[0].headers.get("spacebring-network-id").is_none());
}

#[tokio::test]
async fn spacebring_amount_code_attaches_to_the_coupon_that_grants_the_amount() {
    let (sb, moltin) = servers().await;
    expect_sb_create(&sb, sb_body("NINEOFF"), "NINEOFF").await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "NINEOFF", "campaign": "amt", "discount": { "amount_off": 900, "currency": "USD" },
            "targets": ["spacebring"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "spacebring", SB_ID);
}

#[tokio::test]
async fn spacebring_carries_expiry_as_utc_z_first_purchase_and_redemption_limit() {
    let (sb, moltin) = servers().await;
    expect_sb_create(
        &sb,
        json!({
            "promocode": {
                "code": "FULL20",
                "couponRef": COUPON,
                // 02:00 at +02:00 is midnight UTC; Spacebring documents ISO 8601 with Z.
                "expiration": { "enabled": true, "date": "2026-04-01T00:00:00Z" },
                "limitByFirstPurchase": true,
                "limitedRedemption": { "enabled": true, "value": 50 }
            }
        }),
        "FULL20",
    )
    .await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "FULL20", "campaign": "pct", "discount": { "percent_off": 20 },
            "expires_at": "2026-04-01T02:00:00+02:00", "first_time_only": true, "max_redemptions": 50,
            "targets": ["spacebring"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "spacebring", SB_ID);
    assert_eq!(common::result(&body, "spacebring")["warnings"], json!([]));
}

/// A field the vendor cannot carry is refused by default, naming the field, and nothing is sent.
#[tokio::test]
async fn a_field_the_vendor_cannot_carry_is_refused_by_default_without_calling() {
    let (sb, moltin) = servers().await;
    let gw = gateway(&sb, &moltin).await;

    let cases = [
        (
            "spacebring",
            "MIN25",
            "minimum_order",
            json!({ "amount": 2500, "currency": "USD" }),
        ),
        ("spacebring", "ADAONLY", "customer", json!({ "id": "cust_42" })),
        ("moltin", "EXP20", "expires_at", json!("2026-04-01T00:00:00Z")),
        ("moltin", "FIRST20", "first_time_only", json!(true)),
    ];
    for (target, code, field, value) in cases {
        let mut request = pct(code, target);
        request[field] = value;
        let (status, body) = gw.create(&request).await;

        assert_eq!(status, 422, "{field}: {body}");
        let r = common::result(&body, target);
        assert_eq!(r["status"], "unsupported", "{r}");
        assert_eq!(r["attempts"], 0, "{r}");
        assert_eq!(r["error"]["kind"], "unsupported_field", "{r}");
        assert_eq!(r["error"]["field"], field, "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
        assert!(r.get("vendor_id").is_none(), "{r}");
    }
}

#[tokio::test]
async fn spacebring_skip_field_sends_without_minimum_order_and_customer_and_warns() {
    let (sb, moltin) = servers().await;
    expect_sb_create(&sb, sb_body("SKIP20"), "SKIP20").await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "SKIP20", "campaign": "pct", "discount": { "percent_off": 20 },
            "minimum_order": { "amount": 2500, "currency": "USD" }, "customer": { "id": "cust_42" },
            "on_unsupported": "skip_field", "targets": ["spacebring"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "spacebring", SB_ID);
    let r = common::result(&body, "spacebring");
    assert_eq!(warning_fields(r), ["minimum_order", "customer"], "{r}");
    for w in r["warnings"].as_array().unwrap() {
        assert!(w["message"].as_str().unwrap().contains("Spacebring"), "{w}");
    }
}

#[tokio::test]
async fn spacebring_basic_auth_header_is_base64_of_key_and_secret() {
    let (sb, moltin) = servers().await;
    // The header alone decides the match here; the body is checked by the other tests.
    sb_endpoint()
        .and(header("Authorization", SB_BASIC))
        .respond_with(sb_created("BASIC20"))
        .expect(1)
        .mount(&sb)
        .await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw.create(&pct("BASIC20", "spacebring")).await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "spacebring", SB_ID);
    let (_, health) = gw.get("/health").await;
    assert_eq!(health["upstreams"]["spacebring"]["configured"], true, "{health}");
}

#[tokio::test]
async fn spacebring_oauth2_client_credentials_fetches_one_token_and_sends_bearer_and_network_id() {
    let (sb, moltin) = servers().await;
    // client_auth defaults to HTTP Basic: base64("sb-client:sb-client-secret").
    common::token_endpoint("/oauth2/token", "sb-client", "sb-client-secret")
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=invoices"))
        .respond_with(common::token_issued("sb-access-1"))
        .named("token endpoint")
        .expect(1)
        .mount(&sb)
        .await;
    for code in ["OAUTH1", "OAUTH2"] {
        sb_endpoint()
            .and(header("Authorization", "Bearer sb-access-1"))
            .and(header("spacebring-network-id", NETWORK))
            .and(header("Content-Type", "application/json"))
            .and(body_json(sb_body(code)))
            .respond_with(sb_created(code))
            .named(code)
            .expect(1)
            .mount(&sb)
            .await;
    }
    let auth = format!(
        "{}\nnetwork_id = \"{NETWORK}\"",
        common::oauth2_client_credentials(
            &format!("{}/oauth2/token", sb.uri()),
            "SB_CLIENT_ID",
            "SB_CLIENT_SECRET",
            ", scopes = [\"invoices\"]"
        )
    );
    let gw = gateway_with(&sb, &moltin, &auth).await;

    for code in ["OAUTH1", "OAUTH2"] {
        let (status, body) = gw.create(&pct(code, "spacebring")).await;
        assert_eq!(status, 201, "{body}");
        assert_created(&body, "spacebring", SB_ID);
    }
    // The second create reused the cached token.
    assert_eq!(gw.token_fetches("spacebring").await, 1);
}

#[tokio::test]
async fn spacebring_400_is_rejected_with_its_message() {
    let (sb, moltin) = servers().await;
    sb_endpoint()
        .and(body_json(sb_body("TAKEN20")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "message": "Promocode with this code already exists",
            "type": "invalid_request_error"
        })))
        .expect(1)
        .mount(&sb)
        .await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw.create(&pct("TAKEN20", "spacebring")).await;

    assert_eq!(status, 502, "{body}");
    let r = common::result(&body, "spacebring");
    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["attempts"], 1, "a 400 is not retried: {r}");
    assert_eq!(r["error"]["kind"], "vendor_rejected");
    assert_eq!(r["error"]["http_status"], 400);
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("Promocode with this code already exists"), "{message}");
    assert!(r.get("vendor_id").is_none());
}

#[tokio::test]
async fn spacebring_passthrough_is_merged_into_the_promocode_object() {
    let (sb, moltin) = servers().await;
    let location = "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c";
    let mut expected = sb_body("LOC20");
    expected["promocode"]["locationRef"] = json!(location);
    expect_sb_create(&sb, expected, "LOC20").await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "LOC20", "campaign": "pct", "discount": { "percent_off": 20 }, "targets": ["spacebring"],
            "passthrough": { "spacebring": { "locationRef": location } }
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "spacebring", SB_ID);
}

#[tokio::test]
async fn spacebring_passthrough_over_coupon_ref_refuses_the_whole_request() {
    let (sb, moltin) = servers().await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "HIJACK", "campaign": "pct", "discount": { "percent_off": 20 },
            "targets": ["spacebring", "moltin"],
            "passthrough": { "spacebring": { "couponRef": "x" } }
        }))
        .await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["status"], 422);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["field"], "passthrough.spacebring.couponRef", "{body}");
    assert!(body.get("results").is_none(), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Moltin
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn moltin_percent_code_sends_the_documented_body_and_uses_the_code_as_vendor_id() {
    let (sb, moltin) = servers().await;
    expect_moltin_create(&moltin, moltin_body(json!([{ "code": "SPRING20" }]))).await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw.create(&pct("SPRING20", "moltin")).await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "moltin", "SPRING20");
    let r = common::result(&body, "moltin");
    assert_eq!(r["vendor"], "moltin");
    assert_eq!(r["warnings"], json!([]));
}

#[tokio::test]
async fn moltin_amount_code_attaches_to_the_promotion_that_grants_the_amount() {
    let (sb, moltin) = servers().await;
    expect_moltin_create(&moltin, moltin_body(json!([{ "code": "NINEOFF" }]))).await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "NINEOFF", "campaign": "amt", "discount": { "amount_off": 900, "currency": "USD" },
            "targets": ["moltin"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "moltin", "NINEOFF");
}

#[tokio::test]
async fn moltin_carries_uses_and_user() {
    let (sb, moltin) = servers().await;
    expect_moltin_create(
        &moltin,
        moltin_body(json!([{ "code": "ADA25", "uses": 25, "user": "cust_42" }])),
    )
    .await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "ADA25", "campaign": "pct", "discount": { "percent_off": 20 },
            "max_redemptions": 25, "customer": { "id": "cust_42", "name": "Ada Lovelace" },
            "targets": ["moltin"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "moltin", "ADA25");
    assert_eq!(common::result(&body, "moltin")["warnings"], json!([]));
}

#[tokio::test]
async fn moltin_skip_field_sends_without_expiry_and_first_time_only_and_warns() {
    let (sb, moltin) = servers().await;
    expect_moltin_create(&moltin, moltin_body(json!([{ "code": "SKIP20", "uses": 3 }]))).await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "SKIP20", "campaign": "pct", "discount": { "percent_off": 20 },
            "expires_at": "2026-04-01T00:00:00Z", "first_time_only": true, "max_redemptions": 3,
            "on_unsupported": "skip_field", "targets": ["moltin"]
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_created(&body, "moltin", "SKIP20");
    let r = common::result(&body, "moltin");
    assert_eq!(warning_fields(r), ["expires_at", "first_time_only"], "{r}");
    for w in r["warnings"].as_array().unwrap() {
        assert!(w["message"].as_str().unwrap().contains("Moltin"), "{w}");
    }
}

#[tokio::test]
async fn moltin_jsonapi_422_is_rejected_with_the_detail() {
    let (sb, moltin) = servers().await;
    moltin_endpoint()
        .and(header("Authorization", MOLTIN_BEARER))
        .and(body_json(moltin_body(json!([{ "code": "TAKEN20" }]))))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "errors": [ {
                "status": 422,
                "title": "Failed Validation",
                "detail": "Promotion code TAKEN20 already exists for this promotion"
            } ]
        })))
        .expect(1)
        .mount(&moltin)
        .await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw.create(&pct("TAKEN20", "moltin")).await;

    assert_eq!(status, 502, "{body}");
    let r = common::result(&body, "moltin");
    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["error"]["kind"], "vendor_rejected");
    assert_eq!(r["error"]["http_status"], 422);
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Promotion code TAKEN20 already exists for this promotion"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Both in one request
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn campaign_without_coupon_ref_leaves_spacebring_unconfigured_and_moltin_created() {
    let (sb, moltin) = servers().await;
    expect_moltin_create(&moltin, moltin_body(json!([{ "code": "HALF" }]))).await;
    let gw = gateway(&sb, &moltin).await;

    // No targets: the campaign's mapping names both upstreams.
    let (status, body) = gw
        .create(&json!({ "code": "HALF", "campaign": "no-coupon-ref", "discount": { "percent_off": 20 } }))
        .await;

    assert_eq!(status, 207, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 2, "{body}");
    let r = common::result(&body, "spacebring");
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["attempts"], 0);
    assert_eq!(r["error"]["kind"], "missing_mapping");
    assert!(r["error"]["message"].as_str().unwrap().contains("coupon_ref"), "{r}");
    assert_created(&body, "moltin", "HALF");
}

#[tokio::test]
async fn campaign_without_promotion_id_leaves_moltin_unconfigured_and_spacebring_created() {
    let (sb, moltin) = servers().await;
    expect_sb_create(&sb, sb_body("HALF"), "HALF").await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "HALF", "campaign": "no-promotion-id", "discount": { "percent_off": 20 },
            "targets": ["spacebring", "moltin"]
        }))
        .await;

    assert_eq!(status, 207, "{body}");
    let r = common::result(&body, "moltin");
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["attempts"], 0);
    assert_eq!(r["error"]["kind"], "missing_mapping");
    assert!(r["error"]["message"].as_str().unwrap().contains("promotion_id"), "{r}");
    assert_created(&body, "spacebring", SB_ID);
}

#[tokio::test]
async fn a_discount_other_than_the_parents_is_refused_for_both_without_calling() {
    let (sb, moltin) = servers().await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({
            "code": "GREEDY", "campaign": "pct", "discount": { "percent_off": 25 },
            "targets": ["spacebring", "moltin"]
        }))
        .await;

    assert_eq!(status, 422, "{body}");
    for upstream in ["spacebring", "moltin"] {
        let r = common::result(&body, upstream);
        assert_eq!(r["status"], "invalid", "{r}");
        assert_eq!(r["error"]["kind"], "contradicts_mapping", "{r}");
        assert_eq!(r["error"]["field"], "discount", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains("25%") && message.contains("20%"), "{message}");
    }
}

#[tokio::test]
async fn both_vendors_get_exactly_one_content_type_application_json() {
    let (sb, moltin) = servers().await;
    expect_sb_create(&sb, sb_body("CT20"), "CT20").await;
    expect_moltin_create(&moltin, moltin_body(json!([{ "code": "CT20" }]))).await;
    let gw = gateway(&sb, &moltin).await;

    let (status, body) = gw
        .create(&json!({ "code": "CT20", "campaign": "pct", "discount": { "percent_off": 20 } }))
        .await;

    assert_eq!(status, 201, "{body}");
    for (vendor, server) in [("spacebring", &sb), ("moltin", &moltin)] {
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1, "{vendor}");
        let values = common::header_values(&received[0], "content-type");
        // Content-Type is a singleton field (RFC 9110 §8.3): sent twice, a strict server reads
        // `application/json, application/json` and refuses the body.
        assert_eq!(values, ["application/json"], "{vendor} got Content-Type {values:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Moltin batches (the adapter itself: the HTTP API creates one code per request)
// ---------------------------------------------------------------------------------------------

mod moltin_batch {
    use promo_adapters::mapping::UpstreamMapping;
    use promo_adapters::model::Party;
    use promo_adapters::money::Percent;
    use promo_adapters::vendors::moltin::{Moltin, BATCH_SIZE};
    use promo_adapters::{Adapter, BuildContext, BuildError, Discount, PromoCode};
    use serde_json::json;

    use super::PROMOTION;

    fn twenty() -> Discount {
        Discount::Percent(Percent::from_hundredths(2000).unwrap())
    }

    fn code(code: &str) -> PromoCode {
        PromoCode {
            campaign: Some("pct".into()),
            ..PromoCode::new(code, twenty())
        }
    }

    fn mapping() -> UpstreamMapping {
        UpstreamMapping {
            promotion_id: Some(PROMOTION.into()),
            discount: Some(twenty()),
            ..Default::default()
        }
    }

    fn ctx(mapping: &UpstreamMapping) -> BuildContext<'_> {
        BuildContext {
            upstream: "moltin",
            mapping: Some(mapping),
            timezone: chrono_tz::Tz::UTC,
            network_id: None,
            currency: None,
        }
    }

    #[test]
    fn three_codes_make_one_request_with_three_entries() {
        let m = mapping();
        let a = code("ZXY_CBA");
        let mut b = code("ABC_XYZ");
        b.max_redemptions = Some(10);
        let mut c = code("ADA_ONLY");
        c.customer = Some(Party {
            id: "cust_42".into(),
            name: None,
        });

        let t = Moltin.build_batch(&[&a, &b, &c], &ctx(&m)).unwrap();

        assert_eq!(Moltin.batch_size(), BATCH_SIZE);
        assert_eq!(t.request.method, "POST");
        assert_eq!(t.request.path, format!("/v2/promotions/{PROMOTION}/codes"));
        assert_eq!(
            t.request.headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        assert_eq!(
            t.request.body,
            Some(json!({
                "data": {
                    "type": "promotion_codes",
                    "codes": [
                        { "code": "ZXY_CBA" },
                        { "code": "ABC_XYZ", "uses": 10 },
                        { "code": "ADA_ONLY", "user": "cust_42" }
                    ]
                }
            }))
        );
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn an_empty_or_oversized_batch_is_refused() {
        let m = mapping();
        let e = Moltin.build_batch(&[], &ctx(&m)).unwrap_err();
        assert!(
            matches!(&e, BuildError::Invalid { field, .. } if field == "codes"),
            "{e:?}"
        );

        let many: Vec<PromoCode> = (0..=BATCH_SIZE).map(|i| code(&format!("C{i}"))).collect();
        let refs: Vec<&PromoCode> = many.iter().collect();
        let e = Moltin.build_batch(&refs, &ctx(&m)).unwrap_err();
        assert!(
            matches!(&e, BuildError::Invalid { field, .. } if field == "codes"),
            "{e:?}"
        );
    }

    #[test]
    fn one_code_with_another_discount_refuses_the_batch() {
        let m = mapping();
        let a = code("OK20");
        let mut b = code("GREEDY");
        b.discount = Discount::Percent(Percent::from_hundredths(2500).unwrap());
        let e = Moltin.build_batch(&[&a, &b], &ctx(&m)).unwrap_err();
        assert!(matches!(e, BuildError::Contradicts { field: "discount", .. }), "{e:?}");
    }

    #[test]
    fn a_promotion_id_cannot_change_the_path() {
        let m = UpstreamMapping {
            promotion_id: Some("../orders?x=1".into()),
            ..mapping()
        };
        let a = code("ZXY_CBA");
        let t = Moltin.build_batch(&[&a], &ctx(&m)).unwrap();
        assert_eq!(t.request.path, "/v2/promotions/..%2Forders%3Fx%3D1/codes");
    }
}
