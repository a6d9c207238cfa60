//! OAuth2 upstream credentials end to end: the real gateway, a Loop upstream and its token
//! endpoint both on wiremock. Covers the token request itself (grant, scope, client
//! authentication), sharing one fetch between concurrent calls, expiry, the one refresh after a
//! 401, failing token endpoints, and the refresh-token grant with rotation.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::loop_created;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

const CID: &str = "client-7f3a";
const CSECRET: &str = "s3cret-Zq81-do-not-leak";

/// Loop's documented 401 body.
fn loop_unauthorized() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({"error": "unauthorized", "message": "invalid or expired token"}))
}

/// The `[upstreams.loop]` table with OAuth2 client credentials at `<token_base>/token`;
/// `more` adds keys inside the auth table (e.g. `, client_auth = "body"`).
fn oauth_loop(loop_base: &str, token_base: &str, more: &str) -> String {
    common::upstream(
        "loop",
        "loop",
        loop_base,
        &common::oauth2_client_credentials(
            &format!("{token_base}/token"),
            "CID",
            "CSECRET",
            &format!(", scopes = [\"promos.write\"]{more}"),
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
        ResponseTemplate::new(200).set_body_json(common::merged(
            common::token_json(&format!("tok-{n}")),
            json!({ "expires_in": self.expires_in }),
        ))
    }
}

/// The token request every client-credentials test expects: POST /token, form-encoded,
/// client credentials as HTTP Basic, grant and scope in the form.
fn token_request() -> MockBuilder {
    common::token_endpoint("/token", CID, CSECRET)
        .and(header("Accept", "application/json"))
        .and(form_is(&[
            ("grant_type", "client_credentials"),
            ("scope", "promos.write"),
        ]))
}

/// Expects `times` [`token_request`]s on `tokens`, each answered by `answer`.
async fn expect_token_requests(tokens: &MockServer, answer: impl Respond + 'static, times: u64) {
    token_request().respond_with(answer).expect(times).mount(tokens).await;
}

/// The gateway with `loop` on `vendor`, its OAuth2 token endpoint on `tokens`.
async fn gateway(vendor: &MockServer, tokens: &MockServer) -> common::Gateway {
    common::start(&oauth_loop(&vendor.uri(), &tokens.uri(), ""), &[], ENV).await
}

/// The request for one 20%-off `code` sent to `loop`.
fn promo(code: &str) -> Value {
    common::percent20(code, &["loop"])
}

/// Expects exactly one Loop create that carries exactly `token` and the body for a 20%-off
/// `code`, answered with `answer`.
async fn expect_loop(vendor: &MockServer, code: &str, token: &str, answer: ResponseTemplate) {
    common::loop_create(token, common::loop_body(code))
        .respond_with(answer)
        .expect(1)
        .mount(vendor)
        .await;
}

/// A token endpoint and a Loop upstream, each failing the test on any call not mocked on it.
async fn servers() -> (MockServer, MockServer) {
    (common::strict_server().await, common::strict_server().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_share_one_token_fetch() {
    let (tokens, vendor) = servers().await;
    expect_token_requests(&tokens, common::token_issued("tok-shared"), 1).await;
    let codes: Vec<String> = (1..=8).map(|i| format!("SHARED-{i}")).collect();
    for (i, code) in codes.iter().enumerate() {
        expect_loop(&vendor, code, "tok-shared", loop_created(&format!("promo_{i}"), code)).await;
    }
    let gw = gateway(&vendor, &tokens).await;

    let answers = gw.create_all(&codes.iter().map(|c| promo(c)).collect::<Vec<_>>()).await;

    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 201, "{body}");
        let r = common::result(body, "loop");
        assert_eq!(r["status"], "created", "{body}");
        assert_eq!(r["vendor_id"], format!("promo_{i}"), "{body}");
        assert_eq!(r["attempts"], 1, "{body}");
        common::assert_hides(&body.to_string(), &["tok-shared"]);
    }
    assert_eq!(gw.token_fetches("loop").await, 1);
}

#[tokio::test]
async fn client_auth_body_sends_the_credentials_in_the_form() {
    let (tokens, vendor) = servers().await;
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
    expect_loop(&vendor, "BODYAUTH", "tok-body", loop_created("promo_b", "BODYAUTH")).await;
    let gw = common::start(
        &oauth_loop(&vendor.uri(), &tokens.uri(), ", client_auth = \"body\""),
        &[],
        ENV,
    )
    .await;

    let (status, body) = gw.create(&promo("BODYAUTH")).await;

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
    let (tokens, vendor) = servers().await;
    expect_token_requests(&tokens, Tokens::lasting(1), 2).await;
    expect_loop(&vendor, "EXP-1", "tok-1", loop_created("promo_1", "EXP-1")).await;
    // Well inside the token's second: the cached token is reused.
    expect_loop(&vendor, "EXP-2", "tok-1", loop_created("promo_2", "EXP-2")).await;
    expect_loop(&vendor, "EXP-3", "tok-2", loop_created("promo_3", "EXP-3")).await;
    let gw = gateway(&vendor, &tokens).await;

    for code in ["EXP-1", "EXP-2"] {
        let (status, body) = gw.create(&promo(code)).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
    }
    assert_eq!(gw.token_fetches("loop").await, 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = gw.create(&promo("EXP-3")).await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_3", "{body}");
    assert_eq!(r["attempts"], 1, "{body}");
    assert_eq!(gw.token_fetches("loop").await, 2);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_once() {
    let (tokens, vendor) = servers().await;
    expect_token_requests(&tokens, Tokens::lasting(3600), 2).await;
    expect_loop(&vendor, "REVOKED", "tok-1", loop_unauthorized()).await;
    expect_loop(&vendor, "REVOKED", "tok-2", loop_created("promo_r", "REVOKED")).await;
    let gw = gateway(&vendor, &tokens).await;

    let (status, body) = gw.create(&promo("REVOKED")).await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_r", "{body}");
    assert_eq!(r["attempts"], 2, "{body}");
    assert!(r.get("error").is_none(), "{body}");
    assert_eq!(gw.token_fetches("loop").await, 2);
    // Both HTTP calls are in the metrics, as `attempts` counts them: the refused one (a 401
    // answer, `rejected`) and its repeat (`created`), each timed, the repeat a retry.
    let metrics = metrics(&gw).await;
    assert_eq!(calls_by(&metrics, "rejected"), 1.0, "{metrics}");
    assert_eq!(calls_by(&metrics, "created"), 1.0, "{metrics}");
    let total: f64 = CALL_OUTCOMES.iter().map(|o| calls_by(&metrics, o)).sum();
    assert_eq!(total, 2.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "promo_gateway_upstream_call_duration_seconds_count", ""),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "promo_gateway_upstream_retries_total", ""),
        1.0,
        "{metrics}"
    );
}

/// Every outcome `promo_gateway_upstream_calls_total` counts calls by.
const CALL_OUTCOMES: [&str; 9] = [
    "created",
    "already_exists",
    "rejected",
    "throttled",
    "server_error",
    "invalid_response",
    "timeout",
    "unreachable",
    "interrupted",
];

/// The gateway's `/metrics` text.
async fn metrics(gw: &common::Gateway) -> String {
    let raw = gw.get_raw("/metrics").await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    raw.text
}

/// The value of `name`'s one sample for upstream `loop` whose labels contain `label` ("" for any).
fn sample(metrics: &str, name: &str, label: &str) -> f64 {
    let found: Vec<f64> = metrics
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?.strip_prefix('{')?;
            (labels.contains("upstream=\"loop\"") && labels.contains(label)).then(|| value.parse().unwrap())
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {label}: {found:?}");
    found[0]
}

/// `promo_gateway_upstream_calls_total` of `loop` for one outcome.
fn calls_by(metrics: &str, outcome: &str) -> f64 {
    sample(
        metrics,
        "promo_gateway_upstream_calls_total",
        &format!("outcome=\"{outcome}\""),
    )
}

#[tokio::test]
async fn a_second_401_is_the_vendors_answer() {
    let (tokens, vendor) = servers().await;
    expect_token_requests(&tokens, Tokens::lasting(3600), 2).await;
    common::loop_endpoint()
        .and(body_json(common::loop_body("NOPE")))
        .respond_with(loop_unauthorized())
        .expect(2)
        .mount(&vendor)
        .await;
    let gw = gateway(&vendor, &tokens).await;

    let (status, body) = gw.create(&promo("NOPE")).await;

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
    assert_eq!(gw.token_fetches("loop").await, 2);
    // Both calls are counted, both answered 401 (`rejected`).
    let metrics = metrics(&gw).await;
    assert_eq!(calls_by(&metrics, "rejected"), 2.0, "{metrics}");
    let total: f64 = CALL_OUTCOMES.iter().map(|o| calls_by(&metrics, o)).sum();
    assert_eq!(total, 2.0, "{metrics}");
}

/// Runs one create against `loop` (OAuth2, token endpoint answering `token_answer`) and
/// `backup` (bearer); returns the response and the loop result's error message.
async fn with_failing_token_endpoint(token_answer: ResponseTemplate) -> (Value, String) {
    let (tokens, vendor) = servers().await;
    let backup = common::strict_server().await;
    expect_token_requests(&tokens, token_answer, 1).await;
    expect_loop(
        &backup,
        "FALLBACK",
        "backup-token",
        loop_created("promo_backup", "FALLBACK"),
    )
    .await;
    let config = format!(
        "{}\n{}",
        oauth_loop(&vendor.uri(), &tokens.uri(), ""),
        common::upstream("backup", "loop", &backup.uri(), "")
    );
    let gw = common::start(&config, &[], ENV).await;

    let (status, body) = gw.create(&common::percent20("FALLBACK", &["loop", "backup"])).await;

    assert_eq!(status, 207, "{body}");
    let b = common::result(&body, "backup");
    assert_eq!(b["status"], "created", "{body}");
    assert_eq!(b["vendor_id"], "promo_backup", "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "failed", "{body}");
    assert_eq!(r["attempts"], 0, "{body}");
    assert_eq!(r["error"]["kind"], "auth", "{body}");
    common::assert_hides(&body.to_string(), &[CSECRET]);
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
    let (tokens, vendor) = servers().await;
    let refresh = |rt: &str| {
        common::token_endpoint("/token", CID, CSECRET)
            .and(form_is(&[("grant_type", "refresh_token"), ("refresh_token", rt)]))
    };
    refresh("rt-initial")
        .respond_with(ResponseTemplate::new(200).set_body_json(common::merged(
            common::token_json("tok-1"),
            json!({ "refresh_token": "rt-rotated" }),
        )))
        .expect(1)
        .mount(&tokens)
        .await;
    refresh("rt-rotated")
        .respond_with(common::token_issued("tok-2"))
        .expect(1)
        .mount(&tokens)
        .await;
    // tok-1 is refused, which forces the second fetch without waiting for expiry.
    expect_loop(&vendor, "ROTATE", "tok-1", loop_unauthorized()).await;
    expect_loop(&vendor, "ROTATE", "tok-2", loop_created("promo_rt", "ROTATE")).await;
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

    let (status, body) = gw.create(&promo("ROTATE")).await;

    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_rt", "{body}");
    assert_eq!(r["attempts"], 2, "{body}");
    common::assert_hides(&body.to_string(), &["rt-"]);
    assert_eq!(gw.token_fetches("loop").await, 2);
}

#[tokio::test]
async fn odd_but_seen_expires_in_values_work() {
    // A numeric string (Azure AD v1 sends these) and a lifetime too long for clock arithmetic.
    for expires_in in [json!("3600"), json!(u64::MAX)] {
        let (tokens, vendor) = servers().await;
        expect_token_requests(
            &tokens,
            ResponseTemplate::new(200).set_body_json(common::merged(
                common::token_json("tok-odd"),
                json!({ "expires_in": expires_in }),
            )),
            1,
        )
        .await;
        for code in ["ODD-1", "ODD-2"] {
            expect_loop(&vendor, code, "tok-odd", loop_created("promo_odd", code)).await;
        }
        let gw = gateway(&vendor, &tokens).await;

        for code in ["ODD-1", "ODD-2"] {
            let (status, body) = gw.create(&promo(code)).await;
            assert_eq!(status, 201, "expires_in {expires_in}: {body}");
            assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
        }
        // The token was cached, not refetched.
        assert_eq!(gw.token_fetches("loop").await, 1, "expires_in {expires_in}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_waiting_on_a_failing_fetch_share_its_error() {
    let (tokens, vendor) = servers().await;
    // Slow to fail, so that every concurrent create is waiting for this one fetch; then one
    // more fetch for the create made afterwards (a failure is not remembered for later calls).
    expect_token_requests(
        &tokens,
        ResponseTemplate::new(503)
            .set_body_json(json!({"error": "temporarily_unavailable"}))
            .set_delay(Duration::from_millis(300)),
        2,
    )
    .await;
    let gw = gateway(&vendor, &tokens).await;

    let codes: Vec<String> = (1..=6).map(|i| format!("DOWN-{i}")).collect();
    let answers = gw.create_all(&codes.iter().map(|c| promo(c)).collect::<Vec<_>>()).await;

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
    assert_eq!(gw.token_fetches("loop").await, 1);

    let (status, body) = gw.create(&promo("DOWN-LATER")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(common::result(&body, "loop")["error"]["kind"], "auth", "{body}");
    assert_eq!(gw.token_fetches("loop").await, 2);
}

/// RFC 6749 §2.3.1: with HTTP Basic client authentication the client id and secret are
/// form-encoded before they are joined by `:` and base64-encoded, so that a `:`, a space or a
/// non-ASCII byte in them reaches the server intact.
#[tokio::test]
async fn basic_client_credentials_are_form_encoded_first() {
    let (tokens, vendor) = servers().await;
    let (id, secret) = ("client:7f3a", "s3cr t/+&é");
    common::token_endpoint("/token", "client%3A7f3a", "s3cr+t%2F%2B%26%C3%A9")
        .and(form_is(&[
            ("grant_type", "client_credentials"),
            ("scope", "promos.write"),
        ]))
        .respond_with(common::token_issued("tok-encoded"))
        .expect(1)
        .mount(&tokens)
        .await;
    expect_loop(
        &vendor,
        "ENCODED-1",
        "tok-encoded",
        loop_created("promo_1", "ENCODED-1"),
    )
    .await;
    let gw = common::start(
        &oauth_loop(&vendor.uri(), &tokens.uri(), ""),
        &[],
        &[("CID", id), ("CSECRET", secret)],
    )
    .await;

    let (status, body) = gw.create(&promo("ENCODED-1")).await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
    common::assert_hides(&body.to_string(), &[secret, "s3cr"]);
}
