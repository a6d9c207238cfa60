//! OAuth2 upstream credentials end to end: the real gateway, a Loop upstream and its token
//! endpoint both on wiremock. Covers the token request itself (grant, scope, client
//! authentication), sharing one fetch between concurrent calls, expiry, the one refresh after a
//! 401, failing token endpoints, and the refresh-token grant with rotation.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CID: &str = "client-7f3a";
const CSECRET: &str = "s3cret-Zq81-do-not-leak";

/// Loop's documented 201 body for `code`.
fn loop_created(id: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "id": id,
        "code": code,
        "active": true,
        "percent_off": 20,
        "amount_off": null,
        "currency": null,
        "expires_at": null,
        "max_redemptions": null,
        "times_redeemed": 0,
        "created_at": "2025-03-01T12:00:00Z"
    }))
}

/// Loop's documented 401 body.
fn loop_unauthorized() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({"error": "unauthorized", "message": "invalid or expired token"}))
}

/// The request for one 20%-off code sent to `targets`.
fn promo(code: &str, targets: &[&str]) -> Value {
    json!({"code": code, "discount": {"percent_off": 20}, "targets": targets})
}

/// The exact body Loop must receive for [`promo`].
fn loop_body(code: &str) -> Value {
    json!({"code": code, "percent_off": 20})
}

/// The `[upstreams.loop]` table with OAuth2 client credentials at `<token_base>/token`;
/// `more` adds keys inside the auth table (e.g. `, client_auth = "body"`).
fn oauth_loop(loop_base: &str, token_base: &str, more: &str) -> String {
    common::upstream(
        "loop",
        "loop",
        loop_base,
        &format!(
            "auth = {{ scheme = \"oauth2\", grant = \"client_credentials\", token_url = \"{token_base}/token\", \
             client_id_env = \"CID\", client_secret_env = \"CSECRET\", scopes = [\"promos.write\"]{more} }}"
        ),
    )
}

const ENV: &[(&str, &str)] = &[("CID", CID), ("CSECRET", CSECRET), ("BACKUP_TOKEN", "backup-token")];

/// A request's form body as a map (every key once).
fn form(req: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&req.body).into_owned().collect()
}

/// Matches a form body with exactly these fields, in any order.
fn form_is(fields: &[(&str, &str)]) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let want: BTreeMap<String, String> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |req: &Request| form(req) == want
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A token endpoint that hands out `tok-1`, `tok-2`, ... with the given lifetime.
struct Tokens {
    issued: AtomicUsize,
    expires_in: u64,
}

impl Tokens {
    fn lasting(expires_in: u64) -> Self {
        Self {
            issued: AtomicUsize::new(0),
            expires_in,
        }
    }
}

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("tok-{n}"),
            "token_type": "Bearer",
            "expires_in": self.expires_in
        }))
    }
}

/// The token request every client-credentials test expects: POST /token, form-encoded,
/// client credentials as HTTP Basic, grant and scope in the form.
fn token_request() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .and(header("Accept", "application/json"))
        .and(header("Authorization", basic(CID, CSECRET).as_str()))
        .and(form_is(&[
            ("grant_type", "client_credentials"),
            ("scope", "promos.write"),
        ]))
}

/// A catch-all that must never be hit: proves no other call reached `server`.
async fn nothing_else(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(418))
        .with_priority(100)
        .expect(0)
        .mount(server)
        .await;
}

/// A Loop create that must carry exactly `token` and the body for `code`.
fn loop_create(code: &str, token: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(header("Authorization", format!("Bearer {token}").as_str()))
        .and(header("Content-Type", "application/json"))
        .and(wiremock::matchers::body_json(loop_body(code)))
}

async fn token_fetches(gw: &common::Gateway, upstream: &str) -> u64 {
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200, "{health}");
    health["upstreams"][upstream]["token_fetches"]
        .as_u64()
        .unwrap_or_else(|| panic!("no token_fetches for {upstream} in {health}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_share_one_token_fetch() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    token_request()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok-shared", "token_type": "Bearer", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    let codes: Vec<String> = (1..=8).map(|i| format!("SHARED-{i}")).collect();
    for (i, code) in codes.iter().enumerate() {
        loop_create(code, "tok-shared")
            .respond_with(loop_created(&format!("promo_{i}"), code))
            .expect(1)
            .mount(&vendor)
            .await;
    }
    nothing_else(&vendor).await;
    let gw = common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await;

    let answers = futures::future::join_all(codes.iter().map(|c| {
        let gw = &gw;
        async move { gw.create(&promo(c, &["loop"])).await }
    }))
    .await;

    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 201, "{body}");
        let r = common::result(body, "loop");
        assert_eq!(r["status"], "created", "{body}");
        assert_eq!(r["vendor_id"], format!("promo_{i}"), "{body}");
        assert_eq!(r["attempts"], 1, "{body}");
        assert!(!body.to_string().contains("tok-shared"), "the token leaked: {body}");
    }
    assert_eq!(token_fetches(&gw, "loop").await, 1);
}

#[tokio::test]
async fn client_auth_body_sends_the_credentials_in_the_form() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .and(form_is(&[
            ("grant_type", "client_credentials"),
            ("scope", "promos.write"),
            ("client_id", CID),
            ("client_secret", CSECRET),
        ]))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "tok-body", "token_type": "Bearer"})),
        )
        .expect(1)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    loop_create("BODYAUTH", "tok-body")
        .respond_with(loop_created("promo_b", "BODYAUTH"))
        .expect(1)
        .mount(&vendor)
        .await;
    nothing_else(&vendor).await;
    let gw = common::start(
        &oauth_loop(&vendor.uri(), &tokens.uri(), ", client_auth = \"body\""),
        &[],
        ENV,
    )
    .await;

    let (status, body) = gw.create(&promo("BODYAUTH", &["loop"])).await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
    assert_eq!(common::result(&body, "loop")["vendor_id"], "promo_b", "{body}");
    // With the credentials in the form, the token request carries no Authorization header.
    let sent = tokens.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert!(
        !sent[0].headers.contains_key("authorization"),
        "client_auth = body must not also send HTTP Basic: {:?}",
        sent[0].headers
    );
}

#[tokio::test]
async fn an_expired_token_is_fetched_anew() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    token_request()
        .respond_with(Tokens::lasting(1))
        .expect(2)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    loop_create("EXP-1", "tok-1")
        .respond_with(loop_created("promo_1", "EXP-1"))
        .expect(1)
        .mount(&vendor)
        .await;
    // Well inside the token's second: the cached token is reused.
    loop_create("EXP-2", "tok-1")
        .respond_with(loop_created("promo_2", "EXP-2"))
        .expect(1)
        .mount(&vendor)
        .await;
    loop_create("EXP-3", "tok-2")
        .respond_with(loop_created("promo_3", "EXP-3"))
        .expect(1)
        .mount(&vendor)
        .await;
    nothing_else(&vendor).await;
    let gw = common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await;

    for code in ["EXP-1", "EXP-2"] {
        let (status, body) = gw.create(&promo(code, &["loop"])).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
    }
    assert_eq!(token_fetches(&gw, "loop").await, 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = gw.create(&promo("EXP-3", &["loop"])).await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_3", "{body}");
    assert_eq!(r["attempts"], 1, "{body}");
    assert_eq!(token_fetches(&gw, "loop").await, 2);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_once() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    token_request()
        .respond_with(Tokens::lasting(3600))
        .expect(2)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    loop_create("REVOKED", "tok-1")
        .respond_with(loop_unauthorized())
        .expect(1)
        .mount(&vendor)
        .await;
    loop_create("REVOKED", "tok-2")
        .respond_with(loop_created("promo_r", "REVOKED"))
        .expect(1)
        .mount(&vendor)
        .await;
    nothing_else(&vendor).await;
    let gw = common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await;

    let (status, body) = gw.create(&promo("REVOKED", &["loop"])).await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_r", "{body}");
    assert_eq!(r["attempts"], 2, "{body}");
    assert!(r.get("error").is_none(), "{body}");
    assert_eq!(token_fetches(&gw, "loop").await, 2);
}

#[tokio::test]
async fn a_second_401_is_the_vendors_answer() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    token_request()
        .respond_with(Tokens::lasting(3600))
        .expect(2)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(wiremock::matchers::body_json(loop_body("NOPE")))
        .respond_with(loop_unauthorized())
        .expect(2)
        .mount(&vendor)
        .await;
    nothing_else(&vendor).await;
    let gw = common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await;

    let (status, body) = gw.create(&promo("NOPE", &["loop"])).await;

    assert_eq!(status, 502, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "rejected", "{body}");
    assert_eq!(r["attempts"], 2, "{body}");
    assert_eq!(r["error"]["kind"], "vendor_rejected", "{body}");
    assert_eq!(r["error"]["http_status"], 401, "{body}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid or expired token"), "{message}");
    // The retry carried the fresh token, not the refused one.
    let calls = vendor.received_requests().await.unwrap();
    let sent: Vec<&str> = calls
        .iter()
        .map(|c| c.headers.get("authorization").unwrap().to_str().unwrap())
        .collect();
    assert_eq!(sent, ["Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(token_fetches(&gw, "loop").await, 2);
}

/// Runs one create against `loop` (OAuth2, token endpoint answering `token_answer`) and
/// `backup` (bearer); returns the response and the loop result's error message.
async fn with_failing_token_endpoint(token_answer: ResponseTemplate) -> (Value, String) {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    let backup = MockServer::start().await;
    token_request()
        .respond_with(token_answer)
        .expect(1)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    nothing_else(&vendor).await;
    loop_create("FALLBACK", "backup-token")
        .respond_with(loop_created("promo_backup", "FALLBACK"))
        .expect(1)
        .mount(&backup)
        .await;
    nothing_else(&backup).await;
    let config = format!(
        "{}\n{}",
        oauth_loop(&vendor.uri(), &tokens.uri(), ""),
        common::upstream("backup", "loop", &backup.uri(), "")
    );
    let gw = common::start(&config, &[], ENV).await;

    let (status, body) = gw.create(&promo("FALLBACK", &["loop", "backup"])).await;

    assert_eq!(status, 207, "{body}");
    let b = common::result(&body, "backup");
    assert_eq!(b["status"], "created", "{body}");
    assert_eq!(b["vendor_id"], "promo_backup", "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "failed", "{body}");
    assert_eq!(r["attempts"], 0, "{body}");
    assert_eq!(r["error"]["kind"], "auth", "{body}");
    assert!(
        !body.to_string().contains(CSECRET),
        "the client secret leaked into the response: {body}"
    );
    let message = r["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("token endpoint"), "{message}");
    (body, message)
}

#[tokio::test]
async fn a_token_endpoint_500_fails_only_its_target() {
    let (_, message) = with_failing_token_endpoint(ResponseTemplate::new(500).set_body_string("boom")).await;
    assert!(message.contains("answered 500"), "{message}");
}

#[tokio::test]
async fn an_invalid_client_answer_is_named() {
    let (_, message) = with_failing_token_endpoint(
        ResponseTemplate::new(401)
            .set_body_json(json!({"error": "invalid_client", "error_description": "Client authentication failed"})),
    )
    .await;
    assert!(message.contains("answered 401"), "{message}");
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains("Client authentication failed"), "{message}");
}

#[tokio::test]
async fn a_token_endpoint_echoing_the_secret_does_not_leak_it() {
    let (_, message) = with_failing_token_endpoint(ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_client",
        "error_description": format!("secret {CSECRET} does not match client {CID}")
    })))
    .await;
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains("[redacted]"), "{message}");
}

#[tokio::test]
async fn refresh_token_grant_uses_the_rotated_refresh_token() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    let refresh = |rt: &str| {
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(header("Content-Type", "application/x-www-form-urlencoded"))
            .and(header("Authorization", basic(CID, CSECRET).as_str()))
            .and(form_is(&[("grant_type", "refresh_token"), ("refresh_token", rt)]))
    };
    refresh("rt-initial")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-rotated"
        })))
        .expect(1)
        .mount(&tokens)
        .await;
    refresh("rt-rotated")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600
        })))
        .expect(1)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    // tok-1 is refused, which forces the second fetch without waiting for expiry.
    loop_create("ROTATE", "tok-1")
        .respond_with(loop_unauthorized())
        .expect(1)
        .mount(&vendor)
        .await;
    loop_create("ROTATE", "tok-2")
        .respond_with(loop_created("promo_rt", "ROTATE"))
        .expect(1)
        .mount(&vendor)
        .await;
    nothing_else(&vendor).await;
    let config = common::upstream(
        "loop",
        "loop",
        &vendor.uri(),
        &format!(
            "auth = {{ scheme = \"oauth2\", grant = \"refresh_token\", token_url = \"{}/token\", \
             client_id_env = \"CID\", client_secret_env = \"CSECRET\", refresh_token_env = \"RT\" }}",
            tokens.uri()
        ),
    );
    let gw = common::start(
        &config,
        &[],
        &[("CID", CID), ("CSECRET", CSECRET), ("RT", "rt-initial")],
    )
    .await;

    let (status, body) = gw.create(&promo("ROTATE", &["loop"])).await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_rt", "{body}");
    assert_eq!(r["attempts"], 2, "{body}");
    assert!(!body.to_string().contains("rt-"), "a refresh token leaked: {body}");
    assert_eq!(token_fetches(&gw, "loop").await, 2);
}

#[tokio::test]
async fn odd_but_seen_expires_in_values_work() {
    // A numeric string (Azure AD v1 sends these) and a lifetime too long for clock arithmetic.
    for expires_in in [json!("3600"), json!(u64::MAX)] {
        let tokens = MockServer::start().await;
        let vendor = MockServer::start().await;
        token_request()
            .respond_with(
                ResponseTemplate::new(200).set_body_json(
                    json!({"access_token": "tok-odd", "token_type": "Bearer", "expires_in": expires_in}),
                ),
            )
            .expect(1)
            .mount(&tokens)
            .await;
        nothing_else(&tokens).await;
        for code in ["ODD-1", "ODD-2"] {
            loop_create(code, "tok-odd")
                .respond_with(loop_created("promo_odd", code))
                .expect(1)
                .mount(&vendor)
                .await;
        }
        nothing_else(&vendor).await;
        let gw = common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await;

        for code in ["ODD-1", "ODD-2"] {
            let (status, body) = gw.create(&promo(code, &["loop"])).await;
            assert_eq!(status, 201, "expires_in {expires_in}: {body}");
            assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
        }
        // The token was cached, not refetched.
        assert_eq!(token_fetches(&gw, "loop").await, 1, "expires_in {expires_in}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_waiting_on_a_failing_fetch_share_its_error() {
    let tokens = MockServer::start().await;
    let vendor = MockServer::start().await;
    // Slow to fail, so that every concurrent create is waiting for this one fetch; then one
    // more fetch for the create made afterwards (a failure is not remembered for later calls).
    token_request()
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": "temporarily_unavailable"}))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(2)
        .mount(&tokens)
        .await;
    nothing_else(&tokens).await;
    nothing_else(&vendor).await;
    let gw = common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await;

    let codes: Vec<String> = (1..=6).map(|i| format!("DOWN-{i}")).collect();
    let answers = futures::future::join_all(codes.iter().map(|c| {
        let gw = &gw;
        async move { gw.create(&promo(c, &["loop"])).await }
    }))
    .await;

    for (status, body) in &answers {
        // Nothing the caller sent was wrong: a failing token endpoint is a bad gateway.
        assert_eq!(*status, 502, "{body}");
        let r = common::result(body, "loop");
        assert_eq!(r["status"], "failed", "{body}");
        assert_eq!(r["error"]["kind"], "auth", "{body}");
        assert_eq!(r["attempts"], 0, "{body}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains("answered 503: temporarily_unavailable"), "{message}");
    }
    assert_eq!(token_fetches(&gw, "loop").await, 1);

    let (status, body) = gw.create(&promo("DOWN-LATER", &["loop"])).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(common::result(&body, "loop")["error"]["kind"], "auth", "{body}");
    assert_eq!(token_fetches(&gw, "loop").await, 2);
}
