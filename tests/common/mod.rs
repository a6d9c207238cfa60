//! The harness every integration test shares: the real router, built from a real config file
//! and real mapping files in a temporary directory, served on a loopback port, with wiremock
//! servers standing in for the vendors. Below the harness: the wiremock scaffolding more than one
//! test file needs (catch-alls, OAuth2 token endpoints, the vendors' documented success answers).
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub mod binary;
pub mod redis;

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

/// A running gateway. Dropping it stops nothing explicitly; the runtime ends with the test.
pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    _dir: Option<TempDir>,
}

/// One `[upstreams.NAME]` table pointing at `base_url`, with extra TOML lines (auth, version...).
/// Rate limits are generous unless `extra` sets its own.
pub fn upstream(name: &str, kind: &str, base_url: &str, extra: &str) -> String {
    let mut t = format!("[upstreams.{name}]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\n{extra}\n");
    if !extra.contains("rate_limit") {
        t.push_str("rate_limit = { per_second = 1000, burst = 1000 }\n");
    }
    if !extra.contains("auth") {
        t.push_str(&format!(
            "auth = {{ scheme = \"bearer\", token_env = \"{}_TOKEN\" }}\n",
            env_prefix(name)
        ));
    }
    if !extra.contains("timeout_ms") {
        t.push_str("timeout_ms = 2000\n");
    }
    if !extra.contains("retry") {
        t.push_str("retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50 }\n");
    }
    t
}

/// `loop` -> `LOOP`, `limio-v2` -> `LIMIO_V2`: the default token variable is `<PREFIX>_TOKEN`.
pub fn env_prefix(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The `auth = {...}` line for OAuth2 client credentials at `token_url`, the client's id and
/// secret read from `id_env` and `secret_env`; `more` adds keys inside the table (it starts with
/// a comma, e.g. `, scopes = ["x"]`).
pub fn oauth2_client_credentials(token_url: &str, id_env: &str, secret_env: &str, more: &str) -> String {
    format!(
        "auth = {{ scheme = \"oauth2\", grant = \"client_credentials\", token_url = \"{token_url}\", \
         client_id_env = \"{id_env}\", client_secret_env = \"{secret_env}\"{more} }}"
    )
}

/// The `spring` campaign for Loop (its own discount) and Partnero (a coupon granting 20% off).
pub const SPRING_LOOP_PARTNERO: &str = r#"
[upstreams.loop]

[upstreams.partnero]
coupon_uuid = "coupon_spring"
discount = { percent_off = 20 }
"#;

/// Writes `<dir>/config.toml` (`config` after a [server] table) and `<dir>/mappings/<name>.toml`
/// for each `(name, toml)`; returns the config file's path.
pub fn write_files(dir: &Path, config: &str, mappings: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir(dir.join("mappings")).unwrap();
    for (name, text) in mappings {
        std::fs::write(dir.join("mappings").join(format!("{name}.toml")), text).unwrap();
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[server]\nmax_body_bytes = 16384\n\n{config}")).unwrap();
    path
}

/// Starts the gateway on `config` (upstream tables; a [server] table is added), with mapping
/// files `(campaign, toml)` and the environment `env`.
pub async fn start(config: &str, mappings: &[(&str, &str)], env: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let path = write_files(dir.path(), config, mappings);
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app_from_file(&path, &move |k: &str| env.get(k).cloned()).unwrap();
    let mut gw = serve(router).await;
    gw._dir = Some(dir);
    gw
}

/// Serves `router` on a loopback port.
pub async fn serve(router: axum::Router) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Gateway::at(base)
}

/// One answer as it came: status, Content-Type (empty if none) and the body's text.
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

/// The value of header `name` in `response`, if it has one.
pub fn header_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

impl Raw {
    async fn from(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let content_type = header_of(&r, "content-type").unwrap_or_default();
        let text = r.text().await.unwrap();
        Raw {
            status,
            content_type,
            text,
        }
    }
}

impl Gateway {
    /// A client for a gateway listening at `base` (e.g. the real binary).
    pub fn at(base: String) -> Self {
        Gateway {
            base,
            http: reqwest::Client::new(),
            _dir: None,
        }
    }

    /// POSTs a JSON body to /v1/promo-codes; returns the status and the parsed body.
    pub async fn create(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/promo-codes", body.to_string()).await
    }

    pub async fn dry_run(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/promo-codes?dry_run=true", body.to_string()).await
    }

    /// POSTs every body to /v1/promo-codes at once; the answers in the order of `bodies`.
    pub async fn create_all(&self, bodies: &[Value]) -> Vec<(u16, Value)> {
        futures::future::join_all(bodies.iter().map(|b| self.create(b))).await
    }

    /// POSTs raw text, for bodies that are not JSON.
    pub async fn post(&self, path: &str, body: String) -> (u16, Value) {
        let raw = self.post_raw(path, body).await;
        (
            raw.status,
            serde_json::from_str(&raw.text).unwrap_or(Value::String(raw.text)),
        )
    }

    /// POSTs raw text as `application/json`; the answer unparsed.
    pub async fn post_raw(&self, path: &str, body: String) -> Raw {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Raw::from(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let raw = self.get_raw(path).await;
        (raw.status, serde_json::from_str(&raw.text).unwrap())
    }

    pub async fn get_raw(&self, path: &str) -> Raw {
        Raw::from(self.http.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    /// How many tokens `upstream` has fetched, as /health (answering 200) reports it.
    pub async fn token_fetches(&self, upstream: &str) -> u64 {
        let (status, health) = self.get("/health").await;
        assert_eq!(status, 200, "{health}");
        health["upstreams"][upstream]["token_fetches"]
            .as_u64()
            .unwrap_or_else(|| panic!("no token_fetches for {upstream} in {health}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------------

/// The request for one 20%-off code sent to `targets`.
pub fn percent20(code: &str, targets: &[&str]) -> Value {
    json!({ "code": code, "discount": { "percent_off": 20 }, "targets": targets })
}

/// `base` with the members of `extra` added (or replaced).
pub fn merged(mut base: Value, extra: Value) -> Value {
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    base
}

/// The result for one upstream in a create response.
pub fn result<'a>(body: &'a Value, upstream: &str) -> &'a Value {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .find(|r| r["upstream"] == upstream)
        .unwrap_or_else(|| panic!("no result for {upstream} in {body}"))
}

/// The fields a result's warnings name, in order.
pub fn warning_fields(result: &Value) -> Vec<&str> {
    result["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings array in {result}"))
        .iter()
        .map(|w| w["field"].as_str().unwrap())
        .collect()
}

/// The message of the warning naming `field`.
pub fn warning<'a>(result: &'a Value, field: &str) -> &'a str {
    result["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["field"] == field)
        .unwrap_or_else(|| panic!("no warning for {field} in {result}"))["message"]
        .as_str()
        .unwrap()
}

/// Fails if any of `secrets` appears in `text`.
pub fn assert_hides(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "`{secret}` leaked into a response: {text}");
    }
}

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
// A gateway on a clock the test moves
// ---------------------------------------------------------------------------------------------

/// [`start`] on `clock`: every wait a vendor imposes (Retry-After pauses, back-off, breaker
/// cool-downs) is measured on it, so a test holding a `ManualClock` moves time by hand.
pub async fn start_with_clock(
    config: &str,
    mappings: &[(&str, &str)],
    env: &[(&str, &str)],
    clock: promo_gateway::clock::SharedClock,
) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let path = write_files(dir.path(), config, mappings);
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app(&path, &move |k: &str| env.get(k).cloned(), clock).unwrap();
    let mut gw = serve(router).await;
    gw._dir = Some(dir);
    gw
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys and calls held in flight
// ---------------------------------------------------------------------------------------------

impl Gateway {
    /// POSTs a create with an `Idempotency-Key`: the status, the `idempotent-replayed` header
    /// (if any) and the parsed body.
    pub async fn create_with_key(&self, key: &str, body: &Value) -> (u16, Option<String>, Value) {
        self.create_with_key_raw(key, body.to_string()).await
    }

    /// [`Gateway::create_with_key`] with the body's text as given (another layout of one JSON).
    pub async fn create_with_key_raw(&self, key: &str, body: String) -> (u16, Option<String>, Value) {
        let r = self
            .http
            .post(format!("{}/v1/promo-codes", self.base))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let replayed = header_of(&r, "idempotent-replayed");
        let text = r.text().await.unwrap();
        (
            status,
            replayed,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

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

// ---------------------------------------------------------------------------------------------
// Expected calls and listings
// ---------------------------------------------------------------------------------------------

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

impl Gateway {
    /// Every item of the paged listing at `path` (its query included; `&cursor=` is added),
    /// following `next_cursor`; every page must answer 200.
    pub async fn all_items(&self, path: &str) -> Vec<Value> {
        self.pages(path, usize::MAX).await.concat()
    }

    /// The items of each page of the listing at `path` (its query included; `&cursor=` is added),
    /// following `next_cursor`; every page must answer 200, and fewer than `max_pages` pages may
    /// be followed by another (else the cursor does not advance).
    pub async fn pages(&self, path: &str, max_pages: usize) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut p = path.to_owned();
            if let Some(c) = &cursor {
                p.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get(&p).await;
            assert_eq!(status, 200, "{page}");
            pages.push(
                page["items"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no items in {page}"))
                    .clone(),
            );
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => return pages,
            }
            assert!(pages.len() < max_pages, "the cursor does not advance");
        }
    }
}
