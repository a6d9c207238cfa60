//! Loop and Partnero through the real router, each vendor a wiremock server that checks the exact
//! request its document requires (shared/vendor-docs/loop-create-promo.md and
//! shared/vendor-docs/partnero-create-promotion-code.md) and answers in the documented shapes.

mod common;

use std::time::Duration;

use common::{loop_body, loop_created, partnero_created, warning, warning_fields};
use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

const LOOP_TOKEN: &str = "loop-secret-7c1e9a55";
const PARTNERO_TOKEN: &str = "partnero-secret-42b8d0aa";
const SECRETS: [&str; 2] = [LOOP_TOKEN, PARTNERO_TOKEN];

/// `spring`: Partnero's coupon grants 20% off; Loop is listed so the campaign targets both.
const SPRING: &str = r#"
description = "20% off"

[upstreams.partnero]
coupon_uuid = "coupon_123"
discount = { percent_off = 20 }

[upstreams.loop]
"#;

/// `fixed`: Partnero's coupon grants 5.00 USD off.
const FIXED: &str = r#"
[upstreams.partnero]
coupon_uuid = "coupon_fixed_500"
discount = { amount_off = 500, currency = "USD" }
"#;

const BOTH_TOKENS: [(&str, &str); 2] = [("LOOP_TOKEN", LOOP_TOKEN), ("PARTNERO_TOKEN", PARTNERO_TOKEN)];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Setup {
    loop_srv: MockServer,
    partnero_srv: MockServer,
}

impl Setup {
    async fn new() -> Self {
        Self {
            loop_srv: MockServer::start().await,
            partnero_srv: MockServer::start().await,
        }
    }

    /// Two servers that fail the test if they get any call beyond the mocks mounted on them.
    async fn strict() -> Self {
        Self {
            loop_srv: common::strict_server().await,
            partnero_srv: common::strict_server().await,
        }
    }

    /// Starts the gateway with `loop` and `partnero` pointing at the two servers, extra TOML for
    /// each, and the given environment.
    async fn gateway_with(&self, loop_extra: &str, partnero_extra: &str, env: &[(&str, &str)]) -> common::Gateway {
        let config = format!(
            "{}\n{}",
            common::upstream("loop", "loop", &self.loop_srv.uri(), loop_extra),
            common::upstream("partnero", "partnero", &self.partnero_srv.uri(), partnero_extra)
        );
        common::start(&config, &[("spring", SPRING), ("fixed", FIXED)], env).await
    }

    async fn gateway(&self) -> common::Gateway {
        self.gateway_with("", "", &BOTH_TOKENS).await
    }

    /// Expects exactly one call Loop's document requires (POST /v1/admin/promos, the bearer
    /// token, JSON) with `body`, answered with `answer`.
    async fn expect_loop(&self, body: Value, answer: ResponseTemplate) {
        common::loop_create(LOOP_TOKEN, body)
            .respond_with(answer)
            .expect(1)
            .mount(&self.loop_srv)
            .await;
    }

    /// Expects exactly one call Partnero's document requires (`Accept: application/json`
    /// included) with `body`, answered with `answer`.
    async fn expect_partnero(&self, body: Value, answer: ResponseTemplate) {
        common::partnero_create(PARTNERO_TOKEN, body)
            .respond_with(answer)
            .expect(1)
            .mount(&self.partnero_srv)
            .await;
    }
}

/// POST /v1/promo-codes, asserting that no credential comes back in the answer.
async fn create(gw: &common::Gateway, body: &Value) -> (u16, Value) {
    let (status, answer) = gw.create(body).await;
    assert_no_secret(&answer);
    (status, answer)
}

fn assert_no_secret(answer: &Value) {
    common::assert_hides(&answer.to_string(), &SECRETS);
}

use common::Vendor;

/// What these tests, which pair Loop with Partnero, know of each.
trait Paired: Copy {
    fn other(self) -> Vendor;
    fn server(self, s: &Setup) -> &MockServer;
    /// The vendor's documented success answer for `SPRING20`.
    fn spring20_created(self) -> ResponseTemplate;
    /// The exact call for `SPRING20` at 20% off (campaign `spring`), answered as documented.
    async fn expect_spring20_created(self, s: &Setup);
    /// The id the vendor answers `SPRING20` with.
    fn spring20_id(self) -> &'static str;
}

impl Paired for Vendor {
    fn other(self) -> Vendor {
        match self {
            Vendor::Loop => Vendor::Partnero,
            _ => Vendor::Loop,
        }
    }
    fn server(self, s: &Setup) -> &MockServer {
        match self {
            Vendor::Loop => &s.loop_srv,
            _ => &s.partnero_srv,
        }
    }
    fn spring20_created(self) -> ResponseTemplate {
        match self {
            Vendor::Loop => loop_created("promo_8f3a", "SPRING20"),
            _ => partnero_created("SPRING20"),
        }
    }
    async fn expect_spring20_created(self, s: &Setup) {
        match self {
            Vendor::Loop => s.expect_loop(loop_body("SPRING20"), self.spring20_created()).await,
            _ => {
                s.expect_partnero(common::partnero_body("coupon_123", "SPRING20"), self.spring20_created())
                    .await
            }
        }
    }
    fn spring20_id(self) -> &'static str {
        match self {
            Vendor::Loop => "promo_8f3a",
            _ => "SPRING20",
        }
    }
}

fn spring20(targets: &[&str]) -> Value {
    json!({ "code": "SPRING20", "campaign": "spring", "discount": { "percent_off": 20 }, "targets": targets })
}

// ---------------------------------------------------------------------------------------------
// 1. Percent codes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loop_percent_code_is_created_with_the_documented_call() {
    let s = Setup::strict().await;
    Vendor::Loop.expect_spring20_created(&s).await;
    let gw = s.gateway().await;

    let (status, body) = create(&gw, &common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor"], "loop");
    assert_eq!(r["vendor_id"], "promo_8f3a", "Loop's id, not the code: {r}");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["warnings"], json!([]));
    assert!(r.get("error").is_none(), "{r}");
}

#[tokio::test]
async fn loop_fractional_percent_is_sent_as_written() {
    let s = Setup::strict().await;
    s.expect_loop(
        json!({ "code": "TWELVE-HALF", "percent_off": 12.5 }),
        loop_created("promo_125", "TWELVE-HALF"),
    )
    .await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "TWELVE-HALF", "discount": { "percent_off": 12.5 }, "targets": ["loop"] }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["vendor_id"], "promo_125");
}

/// Content-Type is a singleton field (RFC 9110 §8.3): sent twice, a strict server reads
/// `application/json, application/json` and answers 415.
async fn sends_one_content_type(vendor: Vendor) {
    let s = Setup::strict().await;
    vendor
        .any_call()
        .respond_with(vendor.spring20_created())
        .expect(1)
        .mount(vendor.server(&s))
        .await;
    let gw = s.gateway().await;
    let (status, body) = create(&gw, &spring20(&[vendor.name()])).await;
    assert_eq!(status, 201, "{body}");
    let received = vendor.server(&s).received_requests().await.unwrap();
    let values = |name: &str| common::header_values(&received[0], name);
    assert_eq!(
        values("content-type"),
        ["application/json"],
        "{vendor:?}: Content-Type sent once"
    );
    if let Vendor::Partnero = vendor {
        assert_eq!(values("accept"), ["application/json"], "Accept sent once");
    }
}

#[tokio::test]
async fn loop_sends_one_content_type() {
    sends_one_content_type(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_sends_one_content_type() {
    sends_one_content_type(Vendor::Partnero).await;
}

#[tokio::test]
async fn partnero_percent_code_is_created_with_the_documented_call() {
    let s = Setup::strict().await;
    Vendor::Partnero.expect_spring20_created(&s).await;
    let gw = s.gateway().await;

    let (status, body) = create(&gw, &spring20(&["partnero"])).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor"], "partnero");
    assert_eq!(r["vendor_id"], "SPRING20", "Partnero's id is the code: {r}");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["warnings"], json!([]));
}

#[tokio::test]
async fn a_campaign_without_targets_goes_to_both_and_is_201() {
    let s = Setup::strict().await;
    Vendor::Loop.expect_spring20_created(&s).await;
    Vendor::Partnero.expect_spring20_created(&s).await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "SPRING20", "campaign": "spring", "discount": { "percent_off": 20 } }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["code"], "SPRING20");
    assert_eq!(body["dry_run"], false);
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert_eq!(common::result(&body, "loop")["vendor_id"], "promo_8f3a");
    assert_eq!(common::result(&body, "partnero")["vendor_id"], "SPRING20");
}

// ---------------------------------------------------------------------------------------------
// 2. Amount codes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loop_amount_code_in_the_accounts_currency_sends_minor_units_without_a_warning() {
    let s = Setup::strict().await;
    s.expect_loop(
        json!({ "code": "FLAT15", "amount_off": 1500 }),
        // Loop's documented promo, an amount code: Loop names the account's currency.
        ResponseTemplate::new(201).set_body_json(common::merged(
            common::loop_promo("promo_flat", "FLAT15"),
            json!({ "percent_off": null, "amount_off": 1500, "currency": "eur" }),
        )),
    )
    .await;
    // The Loop account is in EUR, so 1500 minor units mean exactly the 15.00 EUR asked.
    let gw = s.gateway_with("currency = \"EUR\"", "", &BOTH_TOKENS).await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "FLAT15", "discount": { "amount_off": 1500, "currency": "EUR" }, "targets": ["loop"] }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created");
    assert_eq!(r["vendor_id"], "promo_flat");
    assert_eq!(r["warnings"], json!([]), "nothing lost: {r}");
}

#[tokio::test]
async fn loop_amount_code_in_a_zero_decimal_account_currency_is_sent_as_is() {
    let s = Setup::strict().await;
    s.expect_loop(
        json!({ "code": "YEN500", "amount_off": 500 }),
        ResponseTemplate::new(201).set_body_json(common::merged(
            common::loop_promo("promo_yen", "YEN500"),
            json!({ "percent_off": null, "amount_off": 500, "currency": "jpy" }),
        )),
    )
    .await;
    let gw = s.gateway_with("currency = \"JPY\"", "", &BOTH_TOKENS).await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "YEN500", "discount": { "amount_off": 500, "currency": "JPY" }, "targets": ["loop"] }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_yen");
    assert_eq!(r["warnings"], json!([]), "{r}");
}

/// Asserts a 422 whose one target was refused as invalid for `field`, before any call, and
/// returns the error message.
fn refused_for_currency(status: u16, body: &Value, upstream: &str, field: &str) -> String {
    assert_eq!(status, 422, "{body}");
    let r = common::result(body, upstream);
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_for_vendor", "{r}");
    assert_eq!(r["error"]["field"], field, "{r}");
    assert_eq!(r["attempts"], 0, "{r}");
    assert!(r["vendor_id"].is_null(), "{r}");
    r["error"]["message"].as_str().unwrap().to_owned()
}

/// Mounts a mock of the vendor's create call (`POST create_path`) that must never be matched;
/// the strict server's catch-all also fails the test on any other call.
async fn expect_no_call(server: &MockServer, create_path: &str) {
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(create_path))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("no create call for a refused amount")
        .mount(server)
        .await;
}

#[tokio::test]
async fn loop_amount_code_in_another_currency_than_the_account_is_refused_without_calling() {
    let s = Setup::strict().await;
    expect_no_call(&s.loop_srv, "/v1/admin/promos").await;
    let gw = s.gateway_with("currency = \"USD\"", "", &BOTH_TOKENS).await;

    // 500 JPY sent as amount_off 500 to a USD account would be 5.00 USD off: far more.
    let (status, body) = create(
        &gw,
        &json!({ "code": "YEN500", "discount": { "amount_off": 500, "currency": "JPY" }, "targets": ["loop"] }),
    )
    .await;
    let message = refused_for_currency(status, &body, "loop", "discount.currency");
    assert!(
        message.contains("amount_off")
            && message.contains("upstreams.loop.currency says is USD")
            && message.contains("this code is in JPY"),
        "{message}"
    );
}

#[tokio::test]
async fn loop_amount_code_without_a_declared_account_currency_is_refused_naming_the_key() {
    let s = Setup::strict().await;
    expect_no_call(&s.loop_srv, "/v1/admin/promos").await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "FLAT5", "discount": { "amount_off": 500, "currency": "USD" }, "targets": ["loop"] }),
    )
    .await;
    let message = refused_for_currency(status, &body, "loop", "discount.currency");
    assert!(
        message.contains("amount discounts")
            && message.contains("upstreams.loop.currency")
            && message.contains("Loop account"),
        "{message}"
    );
}

#[tokio::test]
async fn partnero_minimum_order_in_another_currency_than_the_program_is_refused_without_calling() {
    let s = Setup::strict().await;
    expect_no_call(&s.partnero_srv, "/v1/promotion-codes").await;
    let gw = s.gateway_with("", "currency = \"JPY\"", &BOTH_TOKENS).await;

    // A 10.00 USD minimum sent as 10 to a JPY program would be a 10 JPY minimum.
    let mut request = spring20(&["partnero"]);
    request["minimum_order"] = json!({ "amount": 1000, "currency": "USD" });
    let (status, body) = create(&gw, &request).await;
    let message = refused_for_currency(status, &body, "partnero", "minimum_order.currency");
    assert!(
        message.contains("minimum_order_value")
            && message.contains("upstreams.partnero.currency says is JPY")
            && message.contains("this code is in USD"),
        "{message}"
    );
}

#[tokio::test]
async fn partnero_minimum_order_without_a_declared_program_currency_is_refused_naming_the_key() {
    let s = Setup::strict().await;
    expect_no_call(&s.partnero_srv, "/v1/promotion-codes").await;
    let gw = s.gateway().await;

    let mut request = spring20(&["partnero"]);
    request["minimum_order"] = json!({ "amount": 1000, "currency": "USD" });
    let (status, body) = create(&gw, &request).await;
    let message = refused_for_currency(status, &body, "partnero", "minimum_order.currency");
    assert!(
        message.contains("minimum orders")
            && message.contains("upstreams.partnero.currency")
            && message.contains("Partnero program"),
        "{message}"
    );
}

#[tokio::test]
async fn partnero_amount_code_attaches_to_a_coupon_granting_that_amount() {
    let s = Setup::strict().await;
    s.expect_partnero(
        common::partnero_body("coupon_fixed_500", "FIVE-OFF"),
        partnero_created("FIVE-OFF"),
    )
    .await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "FIVE-OFF", "campaign": "fixed", "discount": { "amount_off": 500, "currency": "USD" } }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "FIVE-OFF");
    assert_eq!(r["warnings"], json!([]), "the coupon grants exactly the amount: {r}");
}

// ---------------------------------------------------------------------------------------------
// 3. Every field the vendor carries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loop_carries_every_field_it_has() {
    let s = Setup::strict().await;
    s.expect_loop(
        json!({
            "code": "SPRING-VIP",
            "percent_off": 20,
            "valid_until": "2026-04-01T00:00:00Z",
            "max_redemptions": 500
        }),
        loop_created("promo_vip", "SPRING-VIP"),
    )
    .await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({
            "code": "SPRING-VIP",
            "discount": { "percent_off": 20 },
            // 02:00 in +02:00 is midnight UTC: sent as a UTC instant with Z.
            "expires_at": "2026-04-01T02:00:00+02:00",
            "max_redemptions": 500,
            "active": true,
            "first_time_only": false,
            "targets": ["loop"]
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_vip");
    assert_eq!(r["warnings"], json!([]), "nothing lost: {r}");
}

#[tokio::test]
async fn partnero_carries_every_field_it_has() {
    let s = Setup::strict().await;
    s.expect_partnero(
        json!({
            "coupon_uuid": "coupon_123",
            "code": "VIP_2026-a",
            "first_time_order": true,
            "limit_to_specific_partner": true,
            "coupon_specific_partners": { "id": "p_9", "full_name": "Acme Affiliates" },
            "limit_to_specific_customer": true,
            "coupon_specific_customers": { "id": "cus_123", "customer_full_name": "Ada Lovelace" },
            "minimum_order_status": true,
            "minimum_order_value": 23,
            "expiration_date_status": true,
            "expiration_date_value": "2026-03-31",
            "redemption_times_status": true,
            "redemption_times_value": 100,
            "metadata": { "source": "crm", "batch": 7 }
        }),
        partnero_created("VIP_2026-a"),
    )
    .await;
    let gw = s.gateway_with("", "currency = \"USD\"", &BOTH_TOKENS).await;

    let (status, body) = create(
        &gw,
        &json!({
            "code": "VIP_2026-a",
            "campaign": "spring",
            "discount": { "percent_off": 20 },
            "expires_at": "2026-04-01T15:30:00Z",
            "max_redemptions": 100,
            "first_time_only": true,
            "minimum_order": { "amount": 2250, "currency": "USD" },
            "customer": { "id": "cus_123", "name": "Ada Lovelace" },
            "partner": { "id": "p_9", "name": "Acme Affiliates" },
            "metadata": { "source": "crm", "batch": 7 },
            "targets": ["partnero"]
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "VIP_2026-a");
    assert_eq!(warning_fields(r), ["minimum_order", "expires_at"], "{r}");
    // 22.50 USD becomes 23: whole units, rounded up so the code never asks less than given.
    let w = warning(r, "minimum_order");
    assert!(w.contains("23") && w.contains("rounded up") && w.contains("USD"), "{w}");
    // 15:30 on 1 April: 1 April has not ended, so the last whole day is 31 March.
    let w = warning(r, "expires_at");
    assert!(w.contains("2026-03-31") && w.contains("never after"), "{w}");
}

#[tokio::test]
async fn partnero_expiry_date_is_exact_at_midnight_and_counted_in_the_upstreams_zone() {
    let s = Setup::strict().await;
    let limited = |code: &str, date: &str, minimum: u64| {
        json!({
            "coupon_uuid": "coupon_123", "code": code, "first_time_order": false,
            "limit_to_specific_partner": false, "limit_to_specific_customer": false,
            "minimum_order_status": true, "minimum_order_value": minimum,
            "expiration_date_status": true, "expiration_date_value": date,
            "redemption_times_status": false
        })
    };
    s.expect_partnero(
        limited("BERLIN-MIDNIGHT", "2026-03-31", 22),
        partnero_created("BERLIN-MIDNIGHT"),
    )
    .await;
    s.expect_partnero(
        limited("BERLIN-LATE", "2026-03-31", 22),
        partnero_created("BERLIN-LATE"),
    )
    .await;
    let gw = s
        .gateway_with("", "timezone = \"Europe/Berlin\"\ncurrency = \"USD\"", &BOTH_TOKENS)
        .await;
    let request = |code: &str, expires: &str| {
        json!({
            "code": code, "campaign": "spring", "discount": { "percent_off": 20 }, "expires_at": expires,
            "minimum_order": { "amount": 2200, "currency": "USD" }, "targets": ["partnero"]
        })
    };

    // Berlin midnight of 1 April, exactly: valid through 31 March, nothing lost.
    let (status, body) = create(&gw, &request("BERLIN-MIDNIGHT", "2026-04-01T00:00:00+02:00")).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "partnero");
    // 22.00 USD is exactly 22 in the USD program: no minimum_order warning either.
    assert_eq!(r["warnings"], json!([]), "exact expiry and minimum, no warning: {r}");

    // 23:30 UTC on 31 March is already 1 April in Berlin: the last Berlin day ending before it
    // is 31 March (in UTC it would have been 30 March).
    let (status, body) = create(&gw, &request("BERLIN-LATE", "2026-03-31T23:30:00Z")).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "partnero");
    let w = warning(r, "expires_at");
    assert!(w.contains("2026-03-31") && w.contains("Europe/Berlin"), "{w}");
}

// ---------------------------------------------------------------------------------------------
// 4. Fields the vendor cannot carry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loop_refuses_restrictions_it_cannot_carry_without_calling() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;
    let cases = [
        ("first_time_only", json!(true)),
        ("minimum_order", json!({ "amount": 2500, "currency": "USD" })),
        ("customer", json!({ "id": "cus_123", "name": "Ada Lovelace" })),
        ("starts_at", json!("2026-03-01T00:00:00Z")),
        ("active", json!(false)),
    ];
    for (field, value) in cases {
        let mut request = common::percent20("SPRING20", &["loop"]);
        request[field] = value;
        let (status, body) = create(&gw, &request).await;
        assert_eq!(status, 422, "{field}: {body}");
        let r = common::result(&body, "loop");
        assert_eq!(r["status"], "unsupported", "{field}: {r}");
        assert_eq!(r["error"]["kind"], "unsupported_field", "{r}");
        assert_eq!(r["error"]["field"], field, "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(field) && message.contains("skip_field"), "{message}");
        assert_eq!(r["attempts"], 0);
    }
}

#[tokio::test]
async fn loop_with_skip_field_sends_the_code_without_them_and_warns() {
    let s = Setup::strict().await;
    s.expect_loop(loop_body("SPRING20"), loop_created("promo_8f3a", "SPRING20"))
        .await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({
            "code": "SPRING20",
            "discount": { "percent_off": 20 },
            "first_time_only": true,
            "minimum_order": { "amount": 2500, "currency": "USD" },
            "customer": { "id": "cus_123" },
            "starts_at": "2026-03-01T00:00:00Z",
            "description": "Spring sale",
            "on_unsupported": "skip_field",
            "targets": ["loop"]
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(
        warning_fields(r),
        [
            "starts_at",
            "first_time_only",
            "minimum_order",
            "customer",
            "description"
        ],
        "{r}"
    );
    assert!(warning(r, "customer").contains("not sent"), "{r}");
}

#[tokio::test]
async fn partnero_refuses_starts_at_and_inactive_codes_without_calling() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;
    for (field, value) in [("starts_at", json!("2026-03-01T00:00:00Z")), ("active", json!(false))] {
        let mut request = spring20(&["partnero"]);
        request[field] = value;
        let (status, body) = create(&gw, &request).await;
        assert_eq!(status, 422, "{field}: {body}");
        let r = common::result(&body, "partnero");
        assert_eq!(r["status"], "unsupported", "{field}: {r}");
        assert_eq!(r["error"]["kind"], "unsupported_field", "{r}");
        assert_eq!(r["error"]["field"], field, "{r}");
        assert_eq!(r["attempts"], 0);
    }
}

#[tokio::test]
async fn partnero_with_skip_field_sends_the_code_without_them_and_warns() {
    let s = Setup::strict().await;
    Vendor::Partnero.expect_spring20_created(&s).await;
    let gw = s.gateway().await;

    let mut request = spring20(&["partnero"]);
    request["starts_at"] = json!("2026-03-01T00:00:00Z");
    request["active"] = json!(false);
    request["on_unsupported"] = json!("skip_field");
    let (status, body) = create(&gw, &request).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(warning_fields(r), ["active", "starts_at"], "{r}");
}

// ---------------------------------------------------------------------------------------------
// 5. Documented error answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loop_documented_errors_are_rejections_with_the_vendors_message() {
    let cases = [
        (400, "validation_error", "code has already been used"),
        (401, "unauthorized", "Invalid access token"),
        (403, "forbidden", "Token lacks permission to manage promos"),
    ];
    for (http, error, message) in cases {
        let s = Setup::strict().await;
        s.expect_loop(
            loop_body("SPRING20"),
            ResponseTemplate::new(http).set_body_json(json!({ "error": error, "message": message })),
        )
        .await;
        let gw = s.gateway().await;

        let (status, body) = create(&gw, &common::percent20("SPRING20", &["loop"])).await;
        assert_eq!(status, 502, "a call was made and nothing was created: {body}");
        let r = common::result(&body, "loop");
        assert_eq!(r["status"], "rejected", "{http}: {r}");
        assert_eq!(r["error"]["kind"], "vendor_rejected");
        assert_eq!(r["error"]["http_status"], http);
        let text = r["error"]["message"].as_str().unwrap();
        assert!(text.contains(message) && text.contains(error), "{text}");
        assert_eq!(r["attempts"], 1, "a rejection is not retried: {r}");
        assert!(r.get("vendor_id").is_none());
    }
}

#[tokio::test]
async fn partnero_200_with_status_0_is_a_rejection() {
    // The documented envelope with `data: null`, and with PHP's empty array for no data.
    for data in [Value::Null, json!([])] {
        let s = Setup::strict().await;
        s.expect_partnero(
            common::partnero_body("coupon_123", "SPRING20"),
            ResponseTemplate::new(200).set_body_json(json!({
                "data": data, "status": 0, "message": "Coupon not found."
            })),
        )
        .await;
        let gw = s.gateway().await;

        let (status, body) = create(&gw, &spring20(&["partnero"])).await;
        assert_eq!(status, 502, "{body}");
        let r = common::result(&body, "partnero");
        assert_eq!(r["status"], "rejected", "data {data}: {r}");
        assert_eq!(r["error"]["kind"], "vendor_rejected");
        assert_eq!(r["error"]["http_status"], 200);
        assert!(
            r["error"]["message"].as_str().unwrap().contains("Coupon not found."),
            "{r}"
        );
        assert!(r.get("vendor_id").is_none());
    }
}

#[tokio::test]
async fn partnero_422_is_a_rejection_with_its_message() {
    let s = Setup::strict().await;
    s.expect_partnero(
        common::partnero_body("coupon_123", "SPRING20"),
        ResponseTemplate::new(422).set_body_json(json!({
            "message": "The code has already been taken.",
            "errors": { "code": ["The code has already been taken."] }
        })),
    )
    .await;
    let gw = s.gateway().await;

    let (status, body) = create(&gw, &spring20(&["partnero"])).await;
    assert_eq!(status, 502, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["error"]["kind"], "vendor_rejected");
    assert_eq!(r["error"]["http_status"], 422);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The code has already been taken."),
        "{r}"
    );
    assert_eq!(r["attempts"], 1);
}

// ---------------------------------------------------------------------------------------------
// 6. Faults: one target fails, the other is still created
// ---------------------------------------------------------------------------------------------

/// Sends SPRING20 to both; `faulty` answers with `fault` (its config gets `extra`), the other is
/// created. Returns the faulty target's result after checking the other and the 207.
async fn one_faulty(faulty: Vendor, fault: ResponseTemplate, extra: &str) -> Value {
    let s = Setup::strict().await;
    faulty
        .any_call()
        .respond_with(fault)
        .expect(1)
        .named("the faulty vendor, called once")
        .mount(faulty.server(&s))
        .await;
    let healthy = faulty.other();
    healthy.expect_spring20_created(&s).await;
    let (loop_extra, partnero_extra) = match faulty {
        Vendor::Loop => (extra, ""),
        _ => ("", extra),
    };
    let gw = s.gateway_with(loop_extra, partnero_extra, &BOTH_TOKENS).await;

    let (status, body) = create(&gw, &spring20(&["loop", "partnero"])).await;
    assert_eq!(status, 207, "{body}");
    let ok = common::result(&body, healthy.name());
    assert_eq!(ok["status"], "created", "{ok}");
    assert_eq!(ok["vendor_id"], healthy.spring20_id());
    let r = common::result(&body, faulty.name()).clone();
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r.get("vendor_id").is_none(), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    r
}

async fn server_error(faulty: Vendor) {
    let fault = ResponseTemplate::new(500).set_body_json(json!({ "error": "internal", "message": "database down" }));
    let r = one_faulty(faulty, fault, "").await;
    assert_eq!(r["error"]["kind"], "upstream_error", "{r}");
    assert_eq!(r["error"]["http_status"], 500);
    assert!(r["error"]["message"].as_str().unwrap().contains("database down"), "{r}");
}

async fn garbage(faulty: Vendor) {
    let status = faulty.success();
    let fault = ResponseTemplate::new(status).set_body_raw("<html><body>Gateway login</body></html>", "text/html");
    let r = one_faulty(faulty, fault, "").await;
    assert_eq!(r["error"]["kind"], "invalid_response", "{r}");
    assert_eq!(r["error"]["http_status"], status);
    assert!(r["error"]["message"].as_str().unwrap().contains("may exist"), "{r}");
}

async fn timeout(faulty: Vendor) {
    let created = faulty.created(&["SPRING20".to_owned()]);
    let started = std::time::Instant::now();
    let r = one_faulty(
        faulty,
        created.set_delay(Duration::from_millis(1500)),
        "timeout_ms = 300",
    )
    .await;
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert!(r["error"].get("http_status").is_none(), "{r}");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the timeout did not cut the call short"
    );
}

#[tokio::test]
async fn loop_500_fails_only_loop() {
    server_error(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_500_fails_only_partnero() {
    server_error(Vendor::Partnero).await;
}

#[tokio::test]
async fn loop_garbage_success_body_is_an_invalid_response() {
    garbage(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_garbage_success_body_is_an_invalid_response() {
    garbage(Vendor::Partnero).await;
}

#[tokio::test]
async fn loop_timeout_fails_only_loop() {
    timeout(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_timeout_fails_only_partnero() {
    timeout(Vendor::Partnero).await;
}

fn throttled() -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("Retry-After", "0")
        .set_body_json(json!({ "error": "rate_limited", "message": "Too Many Attempts." }))
}

async fn retried_after_429(vendor: Vendor) {
    let s = Setup::strict().await;
    vendor
        .any_call()
        .respond_with(throttled())
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(vendor.server(&s))
        .await;
    vendor.expect_spring20_created(&s).await;
    let gw = s
        .gateway_with(
            "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50 }",
            "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50 }",
            &BOTH_TOKENS,
        )
        .await;

    let (status, body) = create(&gw, &spring20(&[vendor.name()])).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, vendor.name());
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], vendor.spring20_id());
    assert_eq!(r["attempts"], 2, "{r}");
}

async fn throttled_forever(vendor: Vendor) {
    let s = Setup::strict().await;
    vendor
        .any_call()
        .respond_with(throttled())
        .expect(3)
        .mount(vendor.server(&s))
        .await;
    let gw = s.gateway().await;

    let (status, body) = create(&gw, &spring20(&[vendor.name()])).await;
    assert_eq!(status, 502, "{body}");
    let r = common::result(&body, vendor.name());
    assert_eq!(r["status"], "throttled", "{r}");
    assert_eq!(r["error"]["kind"], "rate_limited");
    assert_eq!(r["error"]["http_status"], 429);
    assert_eq!(r["error"]["retry_after_secs"], 0);
    assert_eq!(r["attempts"], 3, "max_attempts is 3: {r}");
}

#[tokio::test]
async fn loop_429_is_retried_then_created() {
    retried_after_429(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_429_is_retried_then_created() {
    retried_after_429(Vendor::Partnero).await;
}

#[tokio::test]
async fn loop_429_forever_is_throttled() {
    throttled_forever(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_429_forever_is_throttled() {
    throttled_forever(Vendor::Partnero).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Codes a vendor does not take
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn partnero_refuses_characters_outside_its_alphabet_while_loop_takes_them() {
    let s = Setup::strict().await;
    s.expect_loop(loop_body("SPRING.20"), loop_created("promo_dot", "SPRING.20"))
        .await;
    let gw = s.gateway().await;

    let mut request = spring20(&["loop", "partnero"]);
    request["code"] = json!("SPRING.20");
    let (status, body) = create(&gw, &request).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_for_vendor");
    assert_eq!(r["error"]["field"], "code");
    assert!(r["error"]["message"].as_str().unwrap().contains("SPRING.20"), "{r}");
    assert_eq!(r["attempts"], 0);

    for code in ["ÉTÉ20", "SPRING/20", "50%OFF"] {
        let mut request = spring20(&["partnero"]);
        request["code"] = json!(code);
        let (status, body) = create(&gw, &request).await;
        assert_eq!(status, 422, "{code}: {body}");
        let r = common::result(&body, "partnero");
        assert_eq!(r["status"], "invalid", "{code}: {r}");
        assert_eq!(r["error"]["field"], "code");
    }
}

#[tokio::test]
async fn loop_refuses_codes_over_50_characters_while_partnero_takes_them() {
    let s = Setup::strict().await;
    let fifty = "A".repeat(50);
    let long = "B".repeat(51);
    s.expect_loop(loop_body(&fifty), loop_created("promo_50", &fifty)).await;
    s.expect_partnero(common::partnero_body("coupon_123", &long), partnero_created(&long))
        .await;
    let gw = s.gateway().await;

    let mut request = spring20(&["loop", "partnero"]);
    request["code"] = json!(long);
    let (status, body) = create(&gw, &request).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(common::result(&body, "partnero")["vendor_id"], long.as_str());
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_for_vendor");
    assert_eq!(r["error"]["field"], "code");
    assert!(r["error"]["message"].as_str().unwrap().contains("51"), "{r}");
    assert_eq!(r["attempts"], 0);

    // Exactly 50 is still Loop's.
    let mut request = spring20(&["loop"]);
    request["code"] = json!(fifty);
    let (status, body) = create(&gw, &request).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["vendor_id"], "promo_50");
}

#[tokio::test]
async fn loop_refuses_a_percent_below_its_documented_minimum_of_1() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "HALF-PERCENT", "discount": { "percent_off": 0.5 }, "targets": ["loop"] }),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_for_vendor");
    assert_eq!(r["error"]["field"], "discount.percent_off");
    assert_eq!(r["attempts"], 0);
}

// ---------------------------------------------------------------------------------------------
// 8. A discount that contradicts the campaign's Partnero coupon
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn partnero_discount_contradicting_the_coupon_is_invalid_and_names_both() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;

    let cases = [
        (json!({ "percent_off": 25 }), "spring", "25% off", "20% off"),
        (
            json!({ "amount_off": 500, "currency": "EUR" }),
            "fixed",
            "5.00 EUR off",
            "5.00 USD off",
        ),
        (json!({ "percent_off": 5 }), "fixed", "5% off", "5.00 USD off"),
    ];
    for (discount, campaign, asked, granted) in cases {
        let (status, body) = create(
            &gw,
            &json!({ "code": "MISMATCH", "campaign": campaign, "discount": discount, "targets": ["partnero"] }),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        let r = common::result(&body, "partnero");
        assert_eq!(r["status"], "invalid", "{r}");
        assert_eq!(r["error"]["kind"], "contradicts_mapping", "{r}");
        assert_eq!(r["error"]["field"], "discount");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(asked) && message.contains(granted), "{message}");
        assert_eq!(r["attempts"], 0);
    }
}

#[tokio::test]
async fn partnero_without_a_campaign_is_unconfigured() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;

    let (status, body) = create(
        &gw,
        &json!({ "code": "NOCAMPAIGN", "discount": { "percent_off": 20 }, "targets": ["partnero"] }),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["error"]["kind"], "missing_mapping");
    assert!(r["error"]["message"].as_str().unwrap().contains("coupon_uuid"), "{r}");
}

#[tokio::test]
async fn partnero_customer_without_a_name_is_invalid() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;

    let mut request = spring20(&["partnero"]);
    request["customer"] = json!({ "id": "cus_123" });
    let (status, body) = create(&gw, &request).await;
    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["error"]["field"], "customer.name");
}

// ---------------------------------------------------------------------------------------------
// 9. Missing credentials
// ---------------------------------------------------------------------------------------------

async fn unconfigured(missing: Vendor) {
    let s = Setup::strict().await;
    let present = missing.other();
    present.expect_spring20_created(&s).await;
    let env: Vec<(&str, &str)> = BOTH_TOKENS
        .iter()
        .copied()
        .filter(|(k, _)| *k != format!("{}_TOKEN", common::env_prefix(missing.name())))
        .collect();
    assert_eq!(env.len(), 1);
    let gw = s.gateway_with("", "", &env).await;
    let var = format!("{}_TOKEN", common::env_prefix(missing.name()));

    let (status, body) = create(&gw, &spring20(&["loop", "partnero"])).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(common::result(&body, present.name())["status"], "created");
    let r = common::result(&body, missing.name());
    assert_eq!(r["status"], "unconfigured", "{r}");
    assert_eq!(r["error"]["kind"], "missing_credentials");
    assert!(r["error"]["message"].as_str().unwrap().contains(&var), "{r}");
    assert_eq!(r["attempts"], 0);

    let (status, health) = gw.get("/health").await;
    assert_no_secret(&health);
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["upstreams"][missing.name()]["configured"], false, "{health}");
    assert_eq!(health["upstreams"][missing.name()]["missing"], json!([var]), "{health}");
    assert_eq!(health["upstreams"][present.name()]["configured"], true, "{health}");
}

#[tokio::test]
async fn loop_without_its_token_is_unconfigured() {
    unconfigured(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_without_its_token_is_unconfigured() {
    unconfigured(Vendor::Partnero).await;
}

// ---------------------------------------------------------------------------------------------
// Dry run, and no secret anywhere
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dry_run_shows_the_exact_requests_without_calling() {
    let s = Setup::strict().await;
    let gw = s.gateway().await;

    let (status, body) = gw.dry_run(&spring20(&["loop", "partnero"])).await;
    assert_no_secret(&body);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "would_send", "{r}");
    assert_eq!(r["attempts"], 0);
    assert_eq!(
        r["request"],
        json!({
            "method": "POST",
            "url": format!("{}/v1/admin/promos", s.loop_srv.uri()),
            "headers": { "Authorization": "Bearer [redacted]", "Content-Type": "application/json" },
            "body": loop_body("SPRING20")
        })
    );
    let r = common::result(&body, "partnero");
    assert_eq!(r["status"], "would_send", "{r}");
    assert_eq!(
        r["request"],
        json!({
            "method": "POST",
            "url": format!("{}/v1/promotion-codes", s.partnero_srv.uri()),
            "headers": {
                "Accept": "application/json",
                "Authorization": "Bearer [redacted]",
                "Content-Type": "application/json"
            },
            "body": common::partnero_body("coupon_123", "SPRING20")
        })
    );
}

#[tokio::test]
async fn no_secret_appears_in_any_response() {
    let s = Setup::new().await;
    // Loop: created, then 401; Partnero: created, then 500.
    common::loop_endpoint()
        .respond_with(loop_created("promo_1", "SECRET-CHECK-1"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&s.loop_srv)
        .await;
    common::loop_endpoint()
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({ "error": "unauthorized", "message": "Invalid token" })),
        )
        .expect(1)
        .mount(&s.loop_srv)
        .await;
    common::partnero_endpoint()
        .respond_with(partnero_created("SECRET-CHECK-1"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&s.partnero_srv)
        .await;
    common::partnero_endpoint()
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(1)
        .mount(&s.partnero_srv)
        .await;
    let gw = s.gateway().await;

    let mut answers = Vec::new();
    answers.push(gw.dry_run(&spring20(&["loop", "partnero"])).await);
    let mut skip = spring20(&["loop", "partnero"]);
    skip["starts_at"] = json!("2026-03-01T00:00:00Z");
    skip["on_unsupported"] = json!("skip_field");
    answers.push(gw.dry_run(&skip).await);
    let mut first = spring20(&["loop", "partnero"]);
    first["code"] = json!("SECRET-CHECK-1");
    answers.push(gw.create(&first).await);
    let mut second = spring20(&["loop", "partnero"]);
    second["code"] = json!("SECRET-CHECK-2");
    answers.push(gw.create(&second).await);
    let mut unsupported = spring20(&["loop", "partnero"]);
    unsupported["starts_at"] = json!("2026-03-01T00:00:00Z");
    answers.push(gw.create(&unsupported).await);
    answers.push(gw.create(&json!({ "code": "", "targets": ["nowhere"] })).await);
    answers.push(gw.post("/v1/promo-codes", "not json".into()).await);
    answers.push(gw.get("/health").await);

    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [200, 200, 201, 502, 422, 422, 400, 200]);
    // The dry runs did show an Authorization header, redacted.
    assert_eq!(
        common::result(&answers[0].1, "loop")["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );
    for (_, body) in &answers {
        assert_no_secret(body);
    }

    // With the tokens unset, a dry run says what is missing and still shows no credential.
    let gw = s.gateway_with("", "", &[]).await;
    let (status, body) = gw.dry_run(&spring20(&["loop", "partnero"])).await;
    assert_no_secret(&body);
    assert_eq!(status, 422, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "unconfigured");
    assert_eq!(r["request"]["headers"]["Authorization"], "[credentials missing]");
}

#[tokio::test]
async fn a_vendor_message_echoing_the_token_is_redacted() {
    let s = Setup::strict().await;
    s.expect_loop(
        loop_body("SPRING20"),
        ResponseTemplate::new(401)
            .set_body_json(json!({ "error": "unauthorized", "message": format!("token {LOOP_TOKEN} is revoked") })),
    )
    .await;
    let gw = s.gateway().await;
    // `create` asserts that no secret appears anywhere in the answer.
    let (status, body) = create(&gw, &common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 502);
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "rejected");
    assert_eq!(
        r["error"]["message"],
        "Loop rejected the code: unauthorized: token [redacted] is revoked"
    );
}
