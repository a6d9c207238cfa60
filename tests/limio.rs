//! Limio promo codes v2 and v3 through the real router, against wiremock standing in for the
//! tenant API and its OAuth2 token endpoint (shared/vendor-docs/limio-promo-codes-v2-v3.md).

mod common;

use common::{warning, warning_fields};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const EXAMPLE: &str = include_str!("../mappings/example.toml");
const CLIENT_ID: &str = "limio-client-id";
const CLIENT_SECRET: &str = "limio-client-secret";
const V2_PATH: &str = "/api/objects/limio/promo_codes_v2";
const V3_PATH: &str = "/api/objects/limio/promo_codes_v3";

/// One Limio upstream on `api` (base URL `<uri>/api`, the documented `https://{tenant}/api`),
/// authenticating with client credentials at `<auth>/oauth/token`.
fn limio(name: &str, version: &str, api: &MockServer, auth: &MockServer, extra: &str) -> String {
    let token_url = format!("{}/oauth/token", auth.uri());
    common::upstream(
        name,
        "limio",
        &format!("{}/api", api.uri()),
        &format!(
            "version = \"{version}\"\n{}\n{extra}",
            common::oauth2_client_credentials(&token_url, "LIMIO_ID", "LIMIO_SECRET", "")
        ),
    )
}

const ENV: &[(&str, &str)] = &[("LIMIO_ID", CLIENT_ID), ("LIMIO_SECRET", CLIENT_SECRET)];

/// A gateway with `limio-v2` and `limio-v3` (the example campaign's names) on one tenant.
async fn gateway(api: &MockServer, auth: &MockServer) -> common::Gateway {
    let config = format!(
        "{}\n{}",
        limio("limio-v2", "v2", api, auth, ""),
        limio("limio-v3", "v3", api, auth, "")
    );
    common::start(&config, &[("example", EXAMPLE)], ENV).await
}

/// Starts [`gateway`] and POSTs the create `request`, asserting the answer's `status`; the
/// gateway and the result for `target`.
async fn start_and_create(
    api: &MockServer,
    auth: &MockServer,
    request: &Value,
    target: &str,
    status: u16,
) -> (common::Gateway, Value) {
    let gw = gateway(api, auth).await;
    let (got, body) = gw.create(request).await;
    assert_eq!(got, status, "{body}");
    let r = common::result(&body, target).clone();
    (gw, r)
}

/// The token endpoint: a client-credentials form, client authenticated with HTTP Basic
/// (RFC 6749 §2.3.1), answering `token`.
fn token_endpoint(token: &str) -> Mock {
    common::token_endpoint("/oauth/token", CLIENT_ID, CLIENT_SECRET)
        .and(body_string("grant_type=client_credentials"))
        .respond_with(common::token_issued(token))
}

/// Any POST to `path_`, whatever the headers and body.
fn endpoint(path_: &str) -> MockBuilder {
    Mock::given(method("POST")).and(path(path_))
}

/// POST `path` with exactly `body`, carrying `Bearer token` and the JSON content type.
fn create(path_: &str, token: &str, body: Value) -> MockBuilder {
    endpoint(path_)
        .and(header("Authorization", format!("Bearer {token}").as_str()))
        .and(header("Content-Type", "application/json"))
        .and(body_json(body))
}

/// Expects exactly one [`create`] call on `api`, answered with `answer`.
async fn expect_create(api: &MockServer, path_: &str, token: &str, body: Value, answer: ResponseTemplate) {
    create(path_, token, body)
        .respond_with(answer)
        .expect(1)
        .mount(api)
        .await;
}

/// The documented `UpdateObjectsResponse` for v2 code `code` (id `promo_code_v2-<code>`).
fn v2_created(code: &str) -> ResponseTemplate {
    common::limio_updated(&format!("promo_code_v2-{code}"), code, "promo_code_v2")
}

/// The documented `UpdateObjectsResponse` for v3 code `code` (id `promo_code_v3-<code>`).
fn v3_created(code: &str) -> ResponseTemplate {
    common::limio_updated(&format!("promo_code_v3-{code}"), code, "promo_code_v3")
}

/// The example mapping's `limio-v2` parent: selected items of the spring offer.
fn v2_data(extra: Value) -> Value {
    common::merged(
        json!({
            "applicationLevel": "selectedItems",
            "referencedOfferLabel": "spring-offer",
            "productDetails": {
                "product": { "path": "/products/digital-subscription" },
                "ratePlan": { "path": "/products/digital-subscription/rate-plans/monthly-discount" }
            }
        }),
        extra,
    )
}

fn attached_discount() -> Value {
    json!({ "id": "d_8f2e", "path": "/offers/discounts/spring-20", "name": "Spring 20%" })
}

/// The exact v2 body for `SPRING-20` at 20% off, with nothing else set.
fn v2_spring20() -> Value {
    json!({
        "name": "SPRING-20",
        "id": "promo_code_v2-SPRING-20",
        "data": v2_data(json!({
            "promoCode": "SPRING-20",
            "status": true,
            "discount": { "discountType": "DiscountPercentage", "percentageDiscount": 20 }
        }))
    })
}

/// The exact v3 body for `SPRING-20` at 20% off, with nothing else set: the catalog discount
/// grants the 20%, so no inline discount.
fn v3_spring20() -> Value {
    json!({
        "name": "SPRING-20",
        "id": "promo_code_v3-SPRING-20",
        "data": { "promoCode": "SPRING-20", "status": true, "attachedDiscount": attached_discount() }
    })
}

/// The request for `SPRING-20` at 20% off in the example campaign, sent to `target` alone.
fn spring20(target: &str) -> Value {
    json!({ "code": "SPRING-20", "campaign": "example", "discount": { "percent_off": 20 }, "targets": [target] })
}

/// `SPRING-20` at `percent_off` for `target`, with every field Limio carries: inactive, a start
/// and an end that are not midnights, a redemption cap, a description and a 3-month duration.
fn every_field(target: &str, percent_off: Value) -> Value {
    json!({
        "code": "SPRING-20", "campaign": "example", "targets": [target],
        "discount": { "percent_off": percent_off },
        "active": false,
        "starts_at": "2026-03-01T09:00:00Z",
        "expires_at": "2026-04-01T12:00:00Z",
        "max_redemptions": 250,
        "description": "Spring sale",
        "duration": { "length": 3, "unit": "months" }
    })
}

/// A tenant API that fails the test on any call not mocked on it, and its token endpoint.
async fn tenant() -> (MockServer, MockServer) {
    (common::strict_server().await, MockServer::start().await)
}

/// A percent code, posted with the token from the token endpoint: v2 carries the discount inline,
/// v3 references the catalog discount and sends no inline discount.
#[tokio::test]
async fn percent_code_is_posted_with_the_token_from_the_token_endpoint() {
    // (target, vendor, token, path, the exact body, the answer, the vendor's id in it)
    let cases = [
        (
            "limio-v2",
            "limio_v2",
            "tok-v2",
            V2_PATH,
            v2_spring20(),
            v2_created("SPRING-20"),
            "promo_code_v2-SPRING-20",
        ),
        (
            "limio-v3",
            "limio_v3",
            "tok-v3",
            V3_PATH,
            v3_spring20(),
            v3_created("SPRING-20"),
            "promo_code_v3-SPRING-20",
        ),
    ];
    for (target, vendor, token, path_, expected, answer, vendor_id) in cases {
        let (api, auth) = tenant().await;
        token_endpoint(token).expect(1).mount(&auth).await;
        expect_create(&api, path_, token, expected, answer).await;
        let (_gw, r) = start_and_create(&api, &auth, &spring20(target), target, 201).await;

        assert_eq!(r["vendor"], vendor);
        assert_eq!(r["status"], "created", "{r}");
        assert_eq!(r["vendor_id"], vendor_id);
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["warnings"], json!([]));
        assert!(r.get("error").is_none(), "{r}");
    }
}

/// v2 only: `DiscountFixedAmount` with `amountDiscount` in decimal major units (at most 2
/// decimals, rounded down) and `currency`. One token serves all three calls.
#[tokio::test]
async fn v2_amount_codes_are_sent_in_major_units_with_their_currency() {
    let (api, auth) = tenant().await;
    token_endpoint("tok").expect(1).mount(&auth).await;
    for (code, amount, currency) in [
        ("KWD-OFF", json!(1.23), "KWD"),
        ("JPY-OFF", json!(500), "JPY"),
        ("USD-OFF", json!(19.99), "USD"),
    ] {
        expect_create(&api, V2_PATH,
            "tok",
            json!({
                "name": code,
                "id": format!("promo_code_v2-{code}"),
                "data": v2_data(json!({
                    "promoCode": code,
                    "status": true,
                    "discount": { "discountType": "DiscountFixedAmount", "amountDiscount": amount, "currency": currency }
                }))
            }), v2_created(code)).await;
    }
    let gw = gateway(&api, &auth).await;
    let send = |code: &str, amount: u64, currency: &str| {
        json!({
            "code": code, "campaign": "example", "targets": ["limio-v2"],
            "discount": { "amount_off": amount, "currency": currency }
        })
    };

    // 1.234 KWD: Limio takes 2 decimals, so 1.23 is sent and the lost fils are reported.
    let (status, body) = gw.create(&send("KWD-OFF", 1234, "KWD")).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "limio-v2");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(
        r["warnings"],
        json!([{
            "field": "discount.amount_off",
            "message": "1.234 KWD sent as 1.23 KWD: Limio takes at most 2 decimals, rounded down"
        }])
    );

    // JPY has no minor units: 500 yen is 500, exactly.
    let (status, body) = gw.create(&send("JPY-OFF", 500, "JPY")).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "limio-v2");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["warnings"], json!([]));

    let (status, body) = gw.create(&send("USD-OFF", 1999, "USD")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "limio-v2")["warnings"], json!([]));
}

/// Everything v2 carries: status, description, both dates (rounded towards the shorter life,
/// with warnings), usage.availableQuantity and the discount's duration.
#[tokio::test]
async fn v2_code_with_every_field_it_carries() {
    let (api, auth) = tenant().await;
    token_endpoint("tok").expect(1).mount(&auth).await;
    expect_create(
        &api,
        V2_PATH,
        "tok",
        json!({
            "name": "SPRING-20",
            "id": "promo_code_v2-SPRING-20",
            "data": v2_data(json!({
                "promoCode": "SPRING-20",
                "status": false,
                "description": "Spring sale",
                "promoStartDate": "2026-03-02",
                "promoExpiryDate": "2026-03-31",
                "usage": { "availableQuantity": 250 },
                "discount": {
                    "discountType": "DiscountPercentage",
                    "percentageDiscount": 12.5,
                    "durationLength": 3,
                    "durationType": "Months"
                }
            }))
        }),
        v2_created("SPRING-20"),
    )
    .await;
    let (_gw, r) = start_and_create(&api, &auth, &every_field("limio-v2", json!(12.5)), "limio-v2", 201).await;

    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            {
                "field": "starts_at",
                "message": "sent as the date 2026-03-02 (the vendor takes a date, counted from its first instant in UTC); the code starts after 2026-03-01T09:00:00+00:00, never before"
            },
            {
                "field": "expires_at",
                "message": "sent as the date 2026-03-31 (the vendor takes a date, read as valid through the end of that day in UTC); the code ends before 2026-04-01T12:00:00+00:00, never after"
            }
        ])
    );
}

/// Everything v3 carries. The duration matches the catalog discount's (the mapping says 3
/// months), so it is accepted and not sent: the catalog item grants it.
#[tokio::test]
async fn v3_code_with_every_field_it_carries() {
    let (api, auth) = tenant().await;
    token_endpoint("tok").expect(1).mount(&auth).await;
    expect_create(
        &api,
        V3_PATH,
        "tok",
        json!({
            "name": "SPRING-20",
            "id": "promo_code_v3-SPRING-20",
            "data": {
                "promoCode": "SPRING-20",
                "status": false,
                "description": "Spring sale",
                "promoStartDate": "2026-03-02",
                "promoExpiryDate": "2026-03-31",
                "usage": { "availableQuantity": 250 },
                "attachedDiscount": attached_discount()
            }
        }),
        v3_created("SPRING-20"),
    )
    .await;
    let (_gw, r) = start_and_create(&api, &auth, &every_field("limio-v3", json!(20)), "limio-v3", 201).await;

    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_code_v3-SPRING-20");
    assert_eq!(warning_fields(&r), ["starts_at", "expires_at"]);
}

#[tokio::test]
async fn dates_at_midnight_in_the_upstreams_zone_are_exact_and_carry_no_warning() {
    let (api, auth) = tenant().await;
    token_endpoint("tok").expect(1).mount(&auth).await;
    expect_create(
        &api,
        V2_PATH,
        "tok",
        json!({
            "name": "MARCH",
            "id": "promo_code_v2-MARCH",
            "data": v2_data(json!({
                "promoCode": "MARCH",
                "status": true,
                "promoStartDate": "2026-03-01",
                "promoExpiryDate": "2026-03-31",
                "discount": { "discountType": "DiscountPercentage", "percentageDiscount": 20 }
            }))
        }),
        v2_created("MARCH"),
    )
    .await;
    let gw = gateway(&api, &auth).await;

    let (status, body) = gw
        .create(&json!({
            "code": "MARCH", "campaign": "example", "targets": ["limio-v2"], "discount": { "percent_off": 20 },
            "starts_at": "2026-03-01T00:00:00Z", "expires_at": "2026-04-01T00:00:00Z"
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "limio-v2");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["warnings"], json!([]));
}

/// The same instants, sent to a UTC tenant and a Berlin tenant, become different dates: each
/// tenant counts days in its own zone, and each date is the conservative one there.
#[tokio::test]
async fn the_upstreams_timezone_decides_the_dates_sent() {
    let (utc_api, berlin_api, auth) = (
        common::strict_server().await,
        common::strict_server().await,
        MockServer::start().await,
    );
    // Each upstream has its own token source.
    token_endpoint("tok").expect(2).mount(&auth).await;
    let body = |start: &str, expiry: &str| {
        json!({
            "name": "TZ",
            "id": "promo_code_v2-TZ",
            "data": {
                "applicationLevel": "wholeBasket",
                "promoCode": "TZ",
                "status": true,
                "promoStartDate": start,
                "promoExpiryDate": expiry,
                "productDetails": { "product": { "path": "/products/p" }, "ratePlan": { "path": "/products/p/rate-plans/r" } },
                "discount": { "discountType": "DiscountPercentage", "percentageDiscount": 20 }
            }
        })
    };
    // 2026-02-28T23:00Z is Berlin midnight on 1 March (exact there); in UTC the code starts
    // during 28 February, so the first whole UTC day is 1 March, with a warning.
    // 2026-03-31T23:30Z is 01:30 on 1 April in Berlin (CEST): 31 March is the last Berlin day
    // that ends before it. In UTC, 31 March has not ended, so the date is 30 March.
    expect_create(
        &utc_api,
        V2_PATH,
        "tok",
        body("2026-03-01", "2026-03-30"),
        v2_created("TZ"),
    )
    .await;
    expect_create(
        &berlin_api,
        V2_PATH,
        "tok",
        body("2026-03-01", "2026-03-31"),
        v2_created("TZ"),
    )
    .await;
    let config = format!(
        "{}\n{}",
        limio("limio-utc", "v2", &utc_api, &auth, ""),
        limio("limio-berlin", "v2", &berlin_api, &auth, "timezone = \"Europe/Berlin\"")
    );
    let parent = "product_path = \"/products/p\"\nrate_plan_path = \"/products/p/rate-plans/r\"\napplication_level = \"whole_basket\"\n";
    let mapping = format!("[upstreams.limio-utc]\n{parent}\n[upstreams.limio-berlin]\n{parent}");
    let gw = common::start(&config, &[("tz", &mapping)], ENV).await;

    let (status, body) = gw
        .create(&json!({
            "code": "TZ", "campaign": "tz", "discount": { "percent_off": 20 },
            "starts_at": "2026-02-28T23:00:00Z", "expires_at": "2026-03-31T23:30:00Z"
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    let utc = common::result(&body, "limio-utc");
    assert_eq!(utc["status"], "created", "{utc}");
    assert_eq!(warning_fields(utc), ["starts_at", "expires_at"]);
    let w = warning(utc, "expires_at");
    assert!(w.contains("2026-03-30"), "{utc}");
    assert!(w.contains("in UTC"), "{utc}");
    let berlin = common::result(&body, "limio-berlin");
    assert_eq!(berlin["status"], "created", "{berlin}");
    assert_eq!(warning_fields(berlin), ["expires_at"]);
    let w = warning(berlin, "expires_at");
    assert!(w.contains("2026-03-31") && w.contains("Europe/Berlin"), "{berlin}");
}

/// Limio has no first-order rule and no customer restriction: by default the code is refused for
/// both versions, naming the field, and nothing is sent (not even a token request).
#[tokio::test]
async fn a_restriction_limio_cannot_carry_is_refused_without_a_call() {
    let (api, auth) = (common::strict_server().await, common::strict_server().await);
    let gw = gateway(&api, &auth).await;

    for (extra, field) in [
        (json!({ "first_time_only": true }), "first_time_only"),
        (json!({ "customer": { "id": "cus_123" } }), "customer"),
    ] {
        let request = common::merged(
            json!({ "code": "SPRING-20", "campaign": "example", "discount": { "percent_off": 20 } }),
            extra,
        );
        let (status, body) = gw.create(&request).await;
        assert_eq!(status, 422, "{body}");
        for target in ["limio-v2", "limio-v3"] {
            let r = common::result(&body, target);
            assert_eq!(r["status"], "unsupported", "{r}");
            assert_eq!(r["error"]["kind"], "unsupported_field", "{r}");
            assert_eq!(r["error"]["field"], field, "{r}");
            let message = r["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("cannot carry {field}:")) && message.contains("skip_field"),
                "{message}"
            );
            assert_eq!(r["attempts"], 0);
        }
    }
}

/// Limio takes dates only: a code whose life holds no whole day would be sent with a start
/// date after its expiry date (never redeemable) and read back as created. It is refused for
/// both versions, naming `expires_at`, and nothing is sent; one whole day is enough.
#[tokio::test]
async fn a_code_living_less_than_a_whole_day_is_refused_without_a_call() {
    let (api, auth) = (common::strict_server().await, common::strict_server().await);
    let gw = gateway(&api, &auth).await;

    let (status, body) = gw
        .create(&json!({
            "code": "FLASH", "campaign": "example", "discount": { "percent_off": 20 },
            "targets": ["limio-v2", "limio-v3"],
            "starts_at": "2026-03-01T09:00:00Z", "expires_at": "2026-03-01T18:00:00Z"
        }))
        .await;

    assert_eq!(status, 422, "{body}");
    for target in ["limio-v2", "limio-v3"] {
        let r = common::result(&body, target);
        assert_eq!(r["status"], "invalid", "{r}");
        assert_eq!(r["error"]["kind"], "invalid_for_vendor", "{r}");
        assert_eq!(r["error"]["field"], "expires_at", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("would start on 2026-03-02 and expire after 2026-02-28"),
            "{message}"
        );
        assert_eq!(r["attempts"], 0, "{r}");
    }
}

/// With `"on_unsupported": "skip_field"` the code is sent without the fields, and the result
/// names each one.
#[tokio::test]
async fn skip_field_sends_the_code_without_the_field_and_warns() {
    let (api, auth) = tenant().await;
    token_endpoint("tok").expect(2).mount(&auth).await;
    expect_create(&api, V2_PATH, "tok", v2_spring20(), v2_created("SPRING-20")).await;
    expect_create(&api, V3_PATH, "tok", v3_spring20(), v3_created("SPRING-20")).await;
    let gw = gateway(&api, &auth).await;

    let (status, body) = gw
        .create(&json!({
            "code": "SPRING-20", "campaign": "example", "discount": { "percent_off": 20 },
            "first_time_only": true, "customer": { "id": "cus_123" },
            "targets": ["limio-v2", "limio-v3"], "on_unsupported": "skip_field"
        }))
        .await;

    assert_eq!(status, 201, "{body}");
    for (target, vendor) in [("limio-v2", "Limio v2"), ("limio-v3", "Limio v3")] {
        let r = common::result(&body, target);
        assert_eq!(r["status"], "created", "{r}");
        let not_sent = format!("not sent: {vendor} has no such field");
        assert_eq!(
            r["warnings"],
            json!([
                { "field": "first_time_only", "message": not_sent },
                { "field": "customer", "message": not_sent }
            ])
        );
    }
}

/// v3's discount and duration come from the catalog item: a code asking for something else is
/// refused for v3 (no call), naming both values.
#[tokio::test]
async fn v3_refuses_a_discount_or_duration_its_catalog_item_does_not_grant() {
    let (api, auth) = (common::strict_server().await, common::strict_server().await);
    let gw = gateway(&api, &auth).await;

    let (status, body) = gw
        .create(&json!({
            "code": "YEN", "campaign": "example", "targets": ["limio-v3"],
            "discount": { "amount_off": 500, "currency": "JPY" }
        }))
        .await;
    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "limio-v3");
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["error"]["kind"], "contradicts_mapping");
    assert_eq!(r["error"]["field"], "discount");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("500 JPY off") && message.contains("20% off"),
        "{message}"
    );

    let (status, body) = gw
        .create(&json!({
            "code": "LONG", "campaign": "example", "targets": ["limio-v3"],
            "discount": { "percent_off": 20 }, "duration": { "length": 6, "unit": "months" }
        }))
        .await;
    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "limio-v3");
    assert_eq!(r["error"]["kind"], "contradicts_mapping", "{r}");
    assert_eq!(r["error"]["field"], "duration");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("6 months") && message.contains("3 months"),
        "{message}"
    );
}

#[tokio::test]
async fn a_mapping_without_the_rate_plan_leaves_v2_unconfigured() {
    let (api, auth) = (common::strict_server().await, common::strict_server().await);
    let config = limio("limio-v2", "v2", &api, &auth, "");
    let mapping = "[upstreams.limio-v2]\nproduct_path = \"/products/p\"\napplication_level = \"whole_basket\"\n";
    let gw = common::start(&config, &[("partial", mapping)], ENV).await;

    let (status, body) = gw
        .create(&json!({ "code": "A1", "campaign": "partial", "discount": { "percent_off": 20 } }))
        .await;

    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "limio-v2");
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["error"]["kind"], "missing_mapping");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("`rate_plan_path`"),
        "{r}"
    );
}

/// The id in the answer is the vendor's, whatever the gateway would have guessed.
#[tokio::test]
async fn the_vendor_id_is_read_from_the_documented_answer() {
    let (api, auth) = (MockServer::start().await, MockServer::start().await);
    token_endpoint("tok").expect(1).mount(&auth).await;
    endpoint(V2_PATH)
        .respond_with(common::limio_updated(
            "promo_code_v2-spring-20-7f3a",
            "SPRING-20",
            "promo_code_v2",
        ))
        .expect(1)
        .mount(&api)
        .await;
    let (_gw, r) = start_and_create(&api, &auth, &spring20("limio-v2"), "limio-v2", 201).await;

    assert_eq!(r["vendor_id"], "promo_code_v2-spring-20-7f3a");
}

#[tokio::test]
async fn a_400_is_rejected_and_not_retried() {
    let (api, auth) = tenant().await;
    token_endpoint("tok").expect(1).mount(&auth).await;
    endpoint(V3_PATH)
        .and(header("Authorization", "Bearer tok"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({ "message": "attachedDiscount.id does not exist" })),
        )
        .expect(1)
        .mount(&api)
        .await;
    let (_gw, r) = start_and_create(&api, &auth, &spring20("limio-v3"), "limio-v3", 502).await;

    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["error"]["kind"], "vendor_rejected");
    assert_eq!(r["error"]["http_status"], 400);
    assert_eq!(
        r["error"]["message"],
        "Limio v3 rejected the code: attachedDiscount.id does not exist"
    );
    assert_eq!(r["attempts"], 1);
    assert!(r.get("vendor_id").is_none(), "{r}");
}

#[tokio::test]
async fn a_200_that_is_not_the_documented_answer_is_not_taken_for_success() {
    let (api, auth) = (MockServer::start().await, MockServer::start().await);
    token_endpoint("tok").expect(1).mount(&auth).await;
    endpoint(V2_PATH)
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .expect(1)
        .mount(&api)
        .await;
    let (_gw, r) = start_and_create(&api, &auth, &spring20("limio-v2"), "limio-v2", 502).await;

    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_response");
    assert_eq!(r["error"]["http_status"], 200);
    assert_eq!(r["attempts"], 1);
}

/// A 401 from the create endpoint drops the cached token: a fresh one is fetched and the call is
/// made once more with it.
#[tokio::test]
async fn a_401_refreshes_the_token_and_retries_once() {
    let (api, auth) = tenant().await;
    token_endpoint("tok-revoked")
        .up_to_n_times(1)
        .expect(1)
        .mount(&auth)
        .await;
    token_endpoint("tok-fresh").expect(1).mount(&auth).await;
    let body = v2_spring20();
    expect_create(
        &api,
        V2_PATH,
        "tok-revoked",
        body.clone(),
        ResponseTemplate::new(401).set_body_json(json!({ "message": "Unauthorized" })),
    )
    .await;
    expect_create(&api, V2_PATH, "tok-fresh", body, v2_created("SPRING-20")).await;
    let (gw, r) = start_and_create(&api, &auth, &spring20("limio-v2"), "limio-v2", 201).await;

    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_code_v2-SPRING-20");
    assert_eq!(r["attempts"], 2);
    assert_eq!(gw.token_fetches("limio-v2").await, 2);
}

/// Only one refresh: a second 401 with a fresh token is Limio's answer.
#[tokio::test]
async fn a_second_401_is_the_vendors_answer() {
    let (api, auth) = tenant().await;
    token_endpoint("tok-1").up_to_n_times(1).expect(1).mount(&auth).await;
    token_endpoint("tok-2").expect(1).mount(&auth).await;
    for token in ["tok-1", "tok-2"] {
        endpoint(V3_PATH)
            .and(header("Authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({ "message": "Unauthorized" })))
            .expect(1)
            .mount(&api)
            .await;
    }
    let (_gw, r) = start_and_create(&api, &auth, &spring20("limio-v3"), "limio-v3", 502).await;

    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["error"]["http_status"], 401);
    assert_eq!(r["error"]["message"], "Limio v3 rejected the code: Unauthorized");
    assert_eq!(r["attempts"], 2);
}

/// Passthrough keys that differ from the gateway's own only in case (or in `_`/`-`, or in a
/// Unicode compatibility form) would reach a vendor whose JSON parser matches keys loosely as
/// a second `promoCode` or `promoExpiryDate`: they are refused with 422 naming the key, and
/// nothing is sent. A key of the vendor's own still goes through.
#[tokio::test]
async fn passthrough_keys_that_match_the_gateways_loosely_are_refused() {
    let (api, auth) = tenant().await;
    let gw = gateway(&api, &auth).await;
    for (target, key, gateway_key) in [
        ("limio-v2", "promocode", "promoCode"),
        ("limio-v2", "promoexpirydate", "promoExpiryDate"),
        ("limio-v2", "PROMO_START_DATE", "promoStartDate"),
        ("limio-v3", "attached-discount", "attachedDiscount"),
        ("limio-v3", "\u{FF53}tatus", "status"),
    ] {
        let mut request = spring20(target);
        request["passthrough"] = json!({ target: { key: "EVIL" } });
        for (status, body) in [gw.create(&request).await, gw.dry_run(&request).await] {
            assert_eq!(status, 422, "{key}: {body}");
            let errors = body["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{body}");
            assert_eq!(errors[0]["field"], format!("passthrough.{target}.{key}"), "{body}");
            let rule = errors[0]["rule"].as_str().unwrap();
            assert!(rule.contains(&format!("would overwrite `{gateway_key}`")), "{rule}");
        }
    }
    // A field of Limio's own that the gateway does not set is merged as before.
    let mut request = spring20("limio-v2");
    request["passthrough"] = json!({ "limio-v2": { "promoStartTime": "09:00" } });
    let (status, body) = gw.dry_run(&request).await;
    assert_eq!(status, 200, "{body}");
    let r = common::result(&body, "limio-v2");
    assert_eq!(r["request"]["body"]["data"]["promoStartTime"], "09:00", "{body}");
    assert_eq!(r["request"]["body"]["data"]["promoCode"], "SPRING-20", "{body}");
    assert!(api.received_requests().await.unwrap().is_empty());
}

/// A Limio v2 deactivate re-sends the whole object (lifecycle/limio.md §3/§4): the one the
/// create sent, passthrough fields included, with `status: false`, to the id create answered.
#[tokio::test]
async fn a_limio_v2_revoke_resends_the_created_object_with_its_passthrough_and_status_false() {
    let (api, auth) = (common::strict_server().await, common::strict_server().await);
    token_endpoint("tok").mount(&auth).await;
    endpoint(V2_PATH)
        .respond_with(v2_created("KEEP-1"))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("{V2_PATH}/promo_code_v2-KEEP-1")))
        .and(header("Authorization", "Bearer tok"))
        .and(header("Content-Type", "application/json"))
        // The update's answer echoes the object, now switched off (lifecycle/limio.md §3).
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "promo_code_v2-KEEP-1", "name": "KEEP-1", "status": "active", "record_type": "promo_code_v2",
            "service": "limio", "data": { "status": false }
        })))
        .expect(1)
        .mount(&api)
        .await;
    let mut request = json!({
        "code": "KEEP-1", "campaign": "example", "targets": ["limio-v2"], "discount": { "percent_off": 20 }
    });
    request["passthrough"] = json!({ "limio-v2": { "customField": "kept" } });
    let (gw, r) = start_and_create(&api, &auth, &request, "limio-v2", 201).await;
    assert_eq!(r["status"], "created", "{r}");
    let (status, body) = gw
        .post(
            "/v1/promo-codes/KEEP-1/revoke",
            json!({ "campaign": "example" }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = common::result(&body, "limio-v2");
    assert_eq!(
        (r["status"].as_str(), r["action"].as_str()),
        (Some("revoked"), Some("deactivated")),
        "{r}"
    );
    let requests = api.received_requests().await.unwrap();
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let put: Value = serde_json::from_slice(&requests[1].body).unwrap();
    let mut expected = sent["data"].clone();
    expected["status"] = json!(false);
    assert_eq!(put, json!({ "data": expected }));
    assert_eq!(put["data"]["customField"], "kept", "{put}");
}
