//! The vendors as wiremock stands them in: each vendor's documented create call (endpoint,
//! headers, body) and answers, OAuth2 token endpoints, catch-alls, and counting what a server
//! received. `common` re-exports all of it (`common::loop_created`, ...).

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// Upstreams (wiremock)
// ---------------------------------------------------------------------------------------------

/// A catch-all that fails the test (on drop) if any call reaches `server` that no other mock
/// takes: it has the lowest priority, so it may be mounted before or after them.
pub async fn no_other_calls(server: &MockServer) {
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599))
        .with_priority(u8::MAX)
        .expect(0)
        .named("no other call")
        .mount(server)
        .await;
}

/// Serves `app` (a vendor written with axum, where wiremock cannot hold or count calls as a test
/// needs) on a loopback port for the rest of the test; its base URL.
pub async fn serve_vendor(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A fresh server with [`no_other_calls`] mounted: it takes only the calls mocked on it later.
pub async fn strict_server() -> MockServer {
    let server = MockServer::start().await;
    no_other_calls(&server).await;
    server
}

/// Every value of header `name` in a request an upstream received, in order.
pub fn header_values(request: &wiremock::Request, name: &str) -> Vec<String> {
    let all = request.headers.get_all(name);
    all.iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// An OAuth2 token request to `path_`: POST, form-encoded, the client authenticated with HTTP
/// Basic (RFC 6749 §2.3.1). Callers add what the form must hold.
pub fn token_endpoint(path_: &str, client_id: &str, client_secret: &str) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(path_))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .and(header("Authorization", basic(client_id, client_secret).as_str()))
}

/// A token endpoint's answer body: a bearer `token` good for an hour.
pub fn token_json(token: &str) -> Value {
    json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 })
}

/// A token endpoint's 200 answer with [`token_json`].
pub fn token_issued(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(token_json(token))
}

/// Loop's create endpoint, whatever the headers and body.
pub fn loop_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/admin/promos"))
}

/// Exactly the call Loop's document requires: POST /v1/admin/promos, `Bearer token`, JSON `body`.
pub fn loop_create(token: &str, body: Value) -> MockBuilder {
    loop_endpoint()
        .and(header("Authorization", format!("Bearer {token}").as_str()))
        .and(header("Content-Type", "application/json"))
        .and(body_json(body))
}

/// Loop's body for a plain 20%-off `code`.
pub fn loop_body(code: &str) -> Value {
    json!({ "code": code, "percent_off": 20 })
}

/// Loop's documented promo object for a 20%-off `code` with id `id`.
pub fn loop_promo(id: &str, code: &str) -> Value {
    json!({
        "id": id, "code": code, "active": true, "percent_off": 20, "amount_off": null,
        "currency": null, "expires_at": null, "max_redemptions": null, "times_redeemed": 0,
        "created_at": "2026-03-01T10:00:00Z"
    })
}

/// Loop's documented 201 answer: [`loop_promo`].
pub fn loop_created(id: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(loop_promo(id, code))
}

/// Loop's documented 409 body: the code exists already.
pub fn loop_conflict_body() -> Value {
    json!({ "error": "conflict", "message": "Promo code already exists" })
}

/// Partnero's create endpoint, whatever the headers and body.
pub fn partnero_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/promotion-codes"))
}

/// Exactly the call Partnero's document requires, `Accept: application/json` included.
pub fn partnero_create(token: &str, body: Value) -> MockBuilder {
    partnero_endpoint()
        .and(header("Authorization", format!("Bearer {token}").as_str()))
        .and(header("Content-Type", "application/json"))
        .and(header("Accept", "application/json"))
        .and(body_json(body))
}

/// Partnero's body for a plain `code` on `coupon` (a code with no limits): every flag is sent,
/// `false` included.
pub fn partnero_body(coupon: &str, code: &str) -> Value {
    json!({
        "coupon_uuid": coupon,
        "code": code,
        "first_time_order": false,
        "limit_to_specific_partner": false,
        "limit_to_specific_customer": false,
        "minimum_order_status": false,
        "expiration_date_status": false,
        "redemption_times_status": false
    })
}

/// Partnero's documented 200 answer for `code` (a code with no limits).
pub fn partnero_created(code: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "data": {
            "code": code, "first_time_order": false, "limit_to_specific_partner": false,
            "coupon_specific_partners": [], "limit_to_specific_customer": false,
            "coupon_specific_customers": [], "minimum_order_status": false, "minimum_order_value": null,
            "expiration_date_status": false, "expiration_date_value": null,
            "redemption_times_status": false, "redemption_times_value": null,
            "metadata": [], "additional_info": [], "times_redeemed": 0
        },
        "status": 1,
        "message": "Promotion code created in the app successfully."
    }))
}

/// Partnero's 409 body: the code is taken already.
pub fn partnero_conflict_body() -> Value {
    json!({ "message": "The code has already been taken." })
}

/// Spacebring's create endpoint, whatever the headers and body.
pub fn spacebring_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path("/discounts/promocodes/v1"))
}

/// Moltin's create endpoint for the codes of `promotion`, whatever the headers and body.
pub fn moltin_endpoint(promotion: &str) -> MockBuilder {
    Mock::given(method("POST")).and(path(format!("/v2/promotions/{promotion}/codes")))
}

/// Spacebring's documented 201 answer: promocode `id` for `code` on `coupon`, in `network`.
pub fn spacebring_created(id: &str, code: &str, coupon: &str, network: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "promocode": {
            "id": id,
            "code": code,
            "couponRef": coupon,
            "createDate": "2026-03-01T10:00:00Z",
            "expiration": { "enabled": false },
            "limitByFirstPurchase": false,
            "limitedRedemption": { "enabled": false, "usage": 0, "value": 0 },
            "networkRef": network
        }
    }))
}

/// Moltin's documented 201 answer: the promotion the codes joined.
pub fn moltin_created(promotion: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "data": {
            "type": "promotion",
            "id": promotion,
            "name": "Promo #1",
            "description": "Initial Promotion",
            "enabled": true,
            "promotion_type": "fixed_discount",
            "schema": { "currencies": [ { "currency": "USD", "amount": 900 }, { "currency": "GBP", "amount": 1100 } ] },
            "start": "2017-11-13T00:00:00Z",
            "end": "2019-11-13T00:00:00Z",
            "created_at": "2018-05-10T15:25:21.164Z",
            "updated_at": "2018-05-10T15:26:18.203Z"
        }
    }))
}

/// Limio's documented 200 `UpdateObjectsResponse` for the object `id` named `name`.
pub fn limio_updated(id: &str, name: &str, record_type: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": id, "name": name, "status": "active", "record_type": record_type, "service": "limio", "data": {}
    }))
}

// ---------------------------------------------------------------------------------------------
// Counting calls and expected calls
// ---------------------------------------------------------------------------------------------

/// How many requests `server` has received so far.
pub async fn received(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// Waits (at most 5 s) until `server` has received `n` requests: a test holding a call in
/// flight (`set_delay`) knows it is there before it acts.
pub async fn wait_for_requests(server: &MockServer, n: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = received(server).await;
        if got >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} received {got} of {n} requests in 5 s",
            server.uri()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Mounts on `server` exactly one documented Loop create of `code` (with `token`), answered 201
/// with the promo `vendor_id`.
pub async fn expect_loop_created(server: &MockServer, token: &str, code: &str, vendor_id: &str) {
    expect_loop_answer(server, token, code, loop_created(vendor_id, code)).await;
}

/// Mounts on `server` exactly one documented Loop create of `code` answered with `answer`.
pub async fn expect_loop_answer(server: &MockServer, token: &str, code: &str, answer: ResponseTemplate) {
    loop_create(token, loop_body(code))
        .respond_with(answer)
        .expect(1)
        .mount(server)
        .await;
}

/// Mounts on `server` a documented Loop create of `code` answered `failure` once, then (the next
/// call) 201 with the promo `vendor_id`: each exactly once.
pub async fn expect_loop_failure_then_created(
    server: &MockServer,
    token: &str,
    code: &str,
    failure: ResponseTemplate,
    vendor_id: &str,
) {
    loop_create(token, loop_body(code))
        .respond_with(failure)
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(server)
        .await;
    loop_create(token, loop_body(code))
        .respond_with(loop_created(vendor_id, code))
        .with_priority(2)
        .expect(1)
        .mount(server)
        .await;
}

/// Fails unless `server` has received exactly `n` requests.
pub async fn assert_calls(server: &MockServer, n: usize, what: &str) {
    assert_eq!(received(server).await, n, "{what}: calls to {}", server.uri());
}

// ---------------------------------------------------------------------------------------------
// The vendors the sync-job, resilience and per-vendor tests drive alike
// ---------------------------------------------------------------------------------------------

/// Moltin's promotion the tests' campaigns attach codes to.
pub const MOLTIN_PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";

/// A vendor whose create call tests mock from its document, one home for what each needs: the
/// endpoint and headers, the body of a plain 20%-off code, and the documented answers. The
/// upstream a test configures for it is named as the vendor is (`loop`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Loop,
    Partnero,
    Moltin,
}

impl Vendor {
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Loop => "loop",
            Vendor::Partnero => "partnero",
            Vendor::Moltin => "moltin",
        }
    }

    /// As the gateway's messages name the vendor.
    pub fn display(self) -> &'static str {
        match self {
            Vendor::Loop => "Loop",
            Vendor::Partnero => "Partnero",
            Vendor::Moltin => "Moltin",
        }
    }

    /// The create endpoint's path (Moltin's under [`MOLTIN_PROMOTION`]).
    pub fn path(self) -> String {
        match self {
            Vendor::Loop => "/v1/admin/promos".into(),
            Vendor::Partnero => "/v1/promotion-codes".into(),
            Vendor::Moltin => format!("/v2/promotions/{MOLTIN_PROMOTION}/codes"),
        }
    }

    /// Any call to the create endpoint, whatever its headers and body (for fault tests).
    pub fn any_call(self) -> MockBuilder {
        Mock::given(method("POST")).and(path(self.path()))
    }

    /// The create endpoint with the headers the vendor's document requires, any body.
    pub fn endpoint(self, token: &str) -> MockBuilder {
        let m = self
            .any_call()
            .and(header("Authorization", format!("Bearer {token}").as_str()))
            .and(header("Content-Type", "application/json"));
        match self {
            Vendor::Partnero => m.and(header("Accept", "application/json")),
            Vendor::Loop | Vendor::Moltin => m,
        }
    }

    /// Exactly the documented call carrying `body`.
    pub fn create(self, token: &str, body: Value) -> MockBuilder {
        self.endpoint(token).and(body_json(body))
    }

    /// The documented body for plain 20%-off codes (one, except on Moltin, which takes a batch;
    /// Partnero's on `coupon`).
    pub fn body(self, coupon: &str, codes: &[String]) -> Value {
        match self {
            Vendor::Loop => loop_body(&codes[0]),
            Vendor::Partnero => partnero_body(coupon, &codes[0]),
            Vendor::Moltin => json!({
                "data": {
                    "type": "promotion_codes",
                    "codes": codes.iter().map(|c| json!({ "code": c })).collect::<Vec<_>>()
                }
            }),
        }
    }

    /// The codes a create body carries.
    pub fn codes_in(self, body: &Value) -> Option<Vec<String>> {
        match self {
            Vendor::Loop | Vendor::Partnero => Some(vec![body["code"].as_str()?.to_owned()]),
            Vendor::Moltin => body["data"]["codes"]
                .as_array()?
                .iter()
                .map(|c| c["code"].as_str().map(str::to_owned))
                .collect(),
        }
    }

    /// The id these tests' vendors give a created code: Loop's own (`promo_<code>`), the code
    /// elsewhere.
    pub fn vendor_id(self, code: &str) -> String {
        match self {
            Vendor::Loop => format!("promo_{code}"),
            Vendor::Partnero | Vendor::Moltin => code.to_owned(),
        }
    }

    /// The documented success status.
    pub fn success(self) -> u16 {
        match self {
            Vendor::Loop | Vendor::Moltin => 201,
            Vendor::Partnero => 200,
        }
    }

    /// The documented success answer for `codes` (Loop's with [`Vendor::vendor_id`]).
    pub fn created(self, codes: &[String]) -> ResponseTemplate {
        match self {
            Vendor::Loop => loop_created(&self.vendor_id(&codes[0]), &codes[0]),
            Vendor::Partnero => partnero_created(&codes[0]),
            Vendor::Moltin => moltin_created(MOLTIN_PROMOTION),
        }
    }

    /// The documented "already exists" answer.
    pub fn conflict(self) -> ResponseTemplate {
        ResponseTemplate::new(409).set_body_json(match self {
            Vendor::Loop => loop_conflict_body(),
            Vendor::Partnero => partnero_conflict_body(),
            Vendor::Moltin => json!({ "errors": [{ "status": 409, "title": "Duplicate code" }] }),
        })
    }
}
