//! Requests the gateway refuses as a whole: each answer is an RFC 9457 problem (status, title,
//! detail and an `errors` array naming every field at fault), and no upstream hears of it.

mod common;

use serde_json::{json, Value};
use wiremock::MockServer;

const CREATE: &str = "/v1/promo-codes";

const TOKENS: &[(&str, &str)] = &[("LOOP_TOKEN", "t"), ("PARTNERO_TOKEN", "t")];

/// Loop and Partnero, both fully configured and both pointing at `server`.
fn config(server: &MockServer) -> String {
    [
        common::upstream("loop", "loop", &server.uri(), ""),
        common::upstream("partnero", "partnero", &server.uri(), ""),
    ]
    .join("\n")
}

/// Loop and Partnero both point at one wiremock server whose only mock is a catch-all that
/// must never be hit. Both are fully configured, so a request that slipped through validation
/// would really be sent.
async fn setup() -> (MockServer, common::Gateway) {
    let server = common::strict_server().await;
    let gw = common::start(&config(&server), &[("spring", common::SPRING_LOOP_PARTNERO)], TOKENS).await;
    (server, gw)
}

/// A valid request; each row breaks it in one way.
fn base() -> Value {
    common::percent20("SPRING-20", &["loop"])
}

fn with(pairs: &[(&str, Value)]) -> String {
    let mut body = base();
    for (key, value) in pairs {
        body[*key] = value.clone();
    }
    body.to_string()
}

fn without(key: &str, pairs: &[(&str, Value)]) -> String {
    let mut body: Value = serde_json::from_str(&with(pairs)).unwrap();
    body.as_object_mut().unwrap().remove(key);
    body.to_string()
}

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

/// POSTs `body` as JSON and insists that the answer is JSON.
async fn post(gw: &common::Gateway, path: &str, body: String) -> Answer {
    let raw = gw.post_raw(path, body).await;
    let body = serde_json::from_str(&raw.text).unwrap_or_else(|_| panic!("answer is not JSON: {}", raw.text));
    Answer {
        status: raw.status,
        content_type: raw.content_type,
        body,
    }
}

/// Checks the problem shape and returns the fields its `errors` name, in order.
fn problem_fields(name: &str, a: &Answer) -> Vec<String> {
    assert_eq!(a.content_type, "application/problem+json", "{name}: {}", a.body);
    let b = &a.body;
    assert_eq!(b["status"], a.status, "{name}: status member: {b}");
    assert!(b["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}: title: {b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{name}: detail: {b}"
    );
    let errors = b["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no errors array: {b}"));
    assert!(!errors.is_empty(), "{name}: empty errors: {b}");
    errors
        .iter()
        .map(|e| {
            let rule = e["rule"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: error without rule: {b}"));
            assert!(!rule.is_empty(), "{name}: empty rule: {b}");
            e["field"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: error without field: {b}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_problem_naming_each_field() {
    let (server, gw) = setup().await;

    // The control: the base request passes validation (a dry run sends nothing).
    let a = post(&gw, "/v1/promo-codes?dry_run=true", base().to_string()).await;
    assert_eq!(a.status, 200, "the base request must be valid: {}", a.body);
    assert_eq!(common::result(&a.body, "loop")["status"], "would_send");

    let percent = |v: Value| with(&[("discount", json!({ "percent_off": v }))]);
    let amount = |v: Value| with(&[("discount", json!({ "amount_off": v, "currency": "USD" }))]);
    let currency = |c: &str| with(&[("discount", json!({ "amount_off": 500, "currency": c }))]);
    let targets = |t: Value| with(&[("targets", t)]);
    let dates = |s: &str, e: &str| with(&[("starts_at", json!(s)), ("expires_at", json!(e))]);
    let too_large = with(&[("description", json!("x".repeat(20_000)))]);

    #[rustfmt::skip]
    let rows: Vec<(&str, &str, String, u16, &[&str])> = vec![
        ("code as a number", CREATE, with(&[("code", json!(42))]), 422, &["code"]),
        ("active as a string", CREATE, with(&[("active", json!("yes"))]), 422, &["active"]),
        ("max_redemptions as a string", CREATE, with(&[("max_redemptions", json!("10"))]), 422, &["max_redemptions"]),
        ("percent_off 0", CREATE, percent(json!(0)), 422, &["discount.percent_off"]),
        ("percent_off 101", CREATE, percent(json!(101)), 422, &["discount.percent_off"]),
        ("percent_off 12.345", CREATE, percent(json!(12.345)), 422, &["discount.percent_off"]),
        ("percent_off negative", CREATE, percent(json!(-5)), 422, &["discount.percent_off"]),
        ("percent_off as a string", CREATE, percent(json!("20")), 422, &["discount.percent_off"]),
        ("amount_off without currency", CREATE, with(&[("discount", json!({ "amount_off": 500 }))]), 422, &["discount.currency"]),
        ("amount_off 0", CREATE, amount(json!(0)), 422, &["discount.amount_off"]),
        ("amount_off negative", CREATE, amount(json!(-500)), 422, &["discount.amount_off"]),
        ("amount_off fractional", CREATE, amount(json!(5.5)), 422, &["discount.amount_off"]),
        ("currency lower case", CREATE, currency("usd"), 422, &["discount.currency"]),
        ("currency unknown", CREATE, currency("XYZ"), 422, &["discount.currency"]),
        ("currency with percent_off", CREATE, with(&[("discount", json!({ "percent_off": 10, "currency": "USD" }))]), 422, &["discount.currency"]),
        ("both percent_off and amount_off", CREATE, with(&[("discount", json!({ "percent_off": 10, "amount_off": 500, "currency": "USD" }))]), 422, &["discount"]),
        ("discount missing", CREATE, without("discount", &[]), 422, &["discount"]),
        ("max_redemptions negative", CREATE, with(&[("max_redemptions", json!(-1))]), 422, &["max_redemptions"]),
        ("max_redemptions 0", CREATE, with(&[("max_redemptions", json!(0))]), 422, &["max_redemptions"]),
        ("unknown upstream in targets", CREATE, targets(json!(["loop", "nowhere"])), 422, &["targets[1]"]),
        ("duplicate target", CREATE, targets(json!(["loop", "partnero", "loop"])), 422, &["targets[2]"]),
        ("empty targets", CREATE, targets(json!([])), 422, &["targets"]),
        ("targets not an array", CREATE, targets(json!("loop")), 422, &["targets"]),
        ("empty code", CREATE, with(&[("code", json!(""))]), 422, &["code"]),
        ("code with a space", CREATE, with(&[("code", json!("SPRING 20"))]), 422, &["code"]),
        ("code missing", CREATE, without("code", &[]), 422, &["code"]),
        ("unknown top-level field", CREATE, with(&[("max_redemption", json!(5))]), 422, &["max_redemption"]),
        ("unknown nested field", CREATE, with(&[("discount", json!({ "percent": 20 }))]), 422, &["discount.percent", "discount"]),
        ("unknown nested field beside an amount", CREATE, with(&[("discount", json!({ "amount_off": 500, "currency": "USD", "percent": 1 }))]), 422, &["discount.percent"]),
        ("starts_at tomorrow", CREATE, with(&[("starts_at", json!("tomorrow"))]), 422, &["starts_at"]),
        ("expires_at month 13", CREATE, with(&[("expires_at", json!("2026-13-01T00:00:00Z"))]), 422, &["expires_at"]),
        ("expires_at before starts_at", CREATE, dates("2026-04-01T00:00:00Z", "2026-03-01T00:00:00Z"), 422, &["expires_at"]),
        ("expires_at equal to starts_at", CREATE, dates("2026-04-01T00:00:00Z", "2026-04-01T02:00:00+02:00"), 422, &["expires_at"]),
        ("expires_at past year 9999 in UTC", CREATE, with(&[("expires_at", json!("9999-12-31T23:59:59-14:00"))]), 422, &["expires_at"]),
        ("starts_at before year 1", CREATE, with(&[("starts_at", json!("0000-06-01T00:00:00Z"))]), 422, &["starts_at"]),
        ("expires_at a leap second", CREATE, with(&[("expires_at", json!("2026-06-30T23:59:60Z"))]), 422, &["expires_at"]),
        ("amount_off 2^53 + 1", CREATE, amount(json!(9_007_199_254_740_993u64)), 422, &["discount.amount_off"]),
        ("amount_off 10^15", CREATE, amount(json!(1_000_000_000_000_000u64)), 422, &["discount.amount_off"]),
        ("minimum_order 2^64 - 1", CREATE, with(&[("minimum_order", json!({ "amount": u64::MAX, "currency": "USD" }))]), 422, &["minimum_order.amount"]),
        ("max_redemptions 2^32", CREATE, with(&[("max_redemptions", json!(4_294_967_296u64))]), 422, &["max_redemptions"]),
        ("duration length 2^32", CREATE, with(&[("duration", json!({ "length": 4_294_967_296u64, "unit": "days" }))]), 422, &["duration.length"]),
        ("neither targets nor campaign", CREATE, without("targets", &[]), 422, &["targets"]),
        ("unknown campaign", CREATE, without("targets", &[("campaign", json!("autumn"))]), 422, &["campaign"]),
        ("customer without id", CREATE, with(&[("customer", json!({ "name": "Ada Lovelace" }))]), 422, &["customer.id"]),
        ("partner with an empty id", CREATE, with(&[("partner", json!({ "id": " ", "name": "Acme" }))]), 422, &["partner.id"]),
        ("on_unsupported ignore", CREATE, with(&[("on_unsupported", json!("ignore"))]), 422, &["on_unsupported"]),
        ("passthrough for a non-target", CREATE, with(&[("passthrough", json!({ "partnero": { "x": 1 } }))]), 422, &["passthrough.partnero"]),
        ("passthrough for an unknown upstream, campaign targets", CREATE, without("targets", &[("campaign", json!("spring")), ("passthrough", json!({ "nowhere": { "x": 1 } }))]), 422, &["passthrough.nowhere"]),
        ("metadata not an object", CREATE, with(&[("metadata", json!(["a"]))]), 422, &["metadata"]),
        ("duration with a bad unit", CREATE, with(&[("duration", json!({ "length": 3, "unit": "fortnights" }))]), 422, &["duration.unit"]),
        ("body not JSON", CREATE, "{\"code\": \"SPRING-20\",".to_owned(), 400, &["body"]),
        ("body empty", CREATE, String::new(), 400, &["body"]),
        ("body a JSON array", CREATE, format!("[{}]", base()), 422, &["body"]),
        ("body over the size limit", CREATE, too_large, 413, &["body"]),
        ("dry_run=maybe", "/v1/promo-codes?dry_run=maybe", base().to_string(), 400, &["dry_run"]),
        ("unknown query parameter", "/v1/promo-codes?dryrun=true", base().to_string(), 400, &["dryrun"]),
    ];
    assert!(rows.len() >= 20);

    let mut failures = Vec::new();
    for (name, path, body, status, fields) in &rows {
        let a = post(&gw, path, body.clone()).await;
        if a.status != *status {
            failures.push(format!("{name}: expected {status}, got {}: {}", a.status, a.body));
            continue;
        }
        let got = problem_fields(name, &a);
        if got != *fields {
            failures.push(format!("{name}: expected fields {fields:?}, got {got:?}: {}", a.body));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    assert!(server.received_requests().await.unwrap().is_empty());
    server.verify().await;
}

#[tokio::test]
async fn every_problem_of_a_request_is_listed_at_once() {
    let (server, gw) = setup().await;
    let body = json!({
        "code": "",
        "discount": { "percent_off": 0, "currency": "USD" },
        "active": "yes",
        "max_redemption": 5,
        "max_redemptions": 0,
        "starts_at": "tomorrow",
        "expires_at": "2026-13-01T00:00:00Z",
        "customer": { "name": "Ada" },
        "targets": ["nowhere", "loop", "loop"],
        "on_unsupported": "ignore",
        "passthrough": 3,
    });
    let a = post(&gw, CREATE, body.to_string()).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let mut got = problem_fields("many problems", &a);
    let count = got.len();
    got.sort();
    got.dedup();
    assert_eq!(count, got.len(), "a problem is listed twice: {}", a.body);
    let mut want = vec![
        "max_redemption",
        "code",
        "discount.currency",
        "discount.percent_off",
        "active",
        "starts_at",
        "expires_at",
        "max_redemptions",
        "customer.id",
        "targets[0]",
        "targets[2]",
        "on_unsupported",
        "passthrough",
    ];
    want.sort();
    assert_eq!(got, want, "{}", a.body);
    assert_eq!(a.body["title"], "Invalid promo code");
    // The detail repeats every field, for clients that only show the detail.
    let detail = a.body["detail"].as_str().unwrap();
    for field in &want {
        assert!(detail.contains(field), "detail omits {field}: {detail}");
    }

    assert!(server.received_requests().await.unwrap().is_empty());
    server.verify().await;
}

#[tokio::test]
async fn a_refused_dry_run_also_calls_nobody_and_a_vendor_rule_is_a_target_result_not_a_problem() {
    let (server, gw) = setup().await;

    // A whole-request problem refuses a dry run too.
    let body = with(&[("code", json!(""))]);
    let a = post(&gw, "/v1/promo-codes?dry_run=true", body).await;
    assert_eq!(a.status, 422);
    assert_eq!(problem_fields("dry run", &a), ["code"]);

    // A code valid for the gateway but too long for Loop (50 characters) is no 4xx problem: the
    // Loop target is `invalid` with the field named, and still nothing is sent.
    let long = "A".repeat(51);
    let a = post(&gw, CREATE, with(&[("code", json!(long))])).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.content_type, "application/json");
    let r = common::result(&a.body, "loop");
    assert_eq!(r["status"], "invalid", "{}", a.body);
    assert_eq!(r["error"]["kind"], "invalid_for_vendor");
    assert_eq!(r["error"]["field"], "code");
    assert_eq!(r["attempts"], 0);

    assert!(server.received_requests().await.unwrap().is_empty());
    server.verify().await;
}

/// A campaign that maps only Loop, while Partnero is configured too: a passthrough naming
/// Partnero would be silently dropped, so the request is refused instead.
#[tokio::test]
async fn a_passthrough_for_an_upstream_the_campaign_does_not_target_is_refused() {
    let (server, _) = setup().await;
    let gw = common::start(&config(&server), &[("loop-only", "[upstreams.loop]\n")], TOKENS).await;
    let (status, body) = gw
        .create(&json!({
            "code": "SPRING-20", "campaign": "loop-only", "discount": { "percent_off": 20 },
            "passthrough": { "partnero": { "limit_to_specific_subscriber": true } }
        }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "passthrough.partnero", "{body}");
    assert!(body["errors"][0]["rule"].as_str().unwrap().contains("loop"), "{body}");
}

/// A key given twice, at any depth, is refused naming its path, in a create and a dry run alike:
/// serde_json keeps the last value, so `{"code": "A", ..., "code": "B"}` used to create `B`
/// while every other reader of the body saw `A`.
#[tokio::test]
async fn a_repeated_json_key_is_refused_naming_its_path() {
    let (server, gw) = setup().await;
    let cases = [
        (
            r#"{"code": "SPRING-20", "discount": {"percent_off": 20}, "targets": ["loop"], "code": "SPRING-99"}"#,
            "code",
        ),
        (
            r#"{"code": "SPRING-20", "discount": {"percent_off": 20, "percent_off": 100}, "targets": ["loop"]}"#,
            "discount.percent_off",
        ),
        (
            r#"{"code": "SPRING-20", "discount": {"percent_off": 20}, "targets": ["loop"], "passthrough": {"loop": {"x": 1, "x": 2}}}"#,
            "passthrough.loop.x",
        ),
    ];
    for (body, path) in cases {
        for endpoint in [CREATE, "/v1/promo-codes?dry_run=true"] {
            let a = post(&gw, endpoint, body.to_owned()).await;
            assert_eq!(a.status, 422, "{endpoint} {body}: {}", a.body);
            assert_eq!(problem_fields(body, &a), [path], "{}", a.body);
            let rule = a.body["errors"][0]["rule"].as_str().unwrap();
            assert!(rule.contains("is given more than once"), "{rule}");
        }
    }
    let (status, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([]), "a refused create was recorded: {page}");
    assert!(server.received_requests().await.unwrap().is_empty());
    server.verify().await;
}

/// `Code` and `PERCENT_OFF` beside the gateway's `code` and `percent_off` would reach a Loop
/// that matches keys case-insensitively as a second code and discount: refused with 422 naming
/// the key and the gateway's field, and nothing is sent.
#[tokio::test]
async fn a_passthrough_key_in_another_case_of_a_gateway_field_is_refused() {
    let (server, gw) = setup().await;
    for (key, gateway_key) in [
        ("Code", "code"),
        ("PERCENT_OFF", "percent_off"),
        ("percentOff", "percent_off"),
        ("Valid-Until", "valid_until"),
        ("MAX_REDEMPTION\u{FF33}", "max_redemptions"),
    ] {
        let mut body = base();
        body["passthrough"] = json!({ "loop": { key: 100 } });
        for endpoint in [CREATE, "/v1/promo-codes?dry_run=true"] {
            let a = post(&gw, endpoint, body.to_string()).await;
            assert_eq!(a.status, 422, "{key}: {}", a.body);
            assert_eq!(problem_fields(key, &a), [format!("passthrough.loop.{key}")]);
            let rule = a.body["errors"][0]["rule"].as_str().unwrap();
            assert!(rule.contains(&format!("would overwrite `{gateway_key}`")), "{rule}");
        }
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    server.verify().await;
}

/// Values outside what every vendor format carries are refused with their true rule, and the
/// largest values inside go out as they are.
#[tokio::test]
async fn values_beyond_every_vendor_format_are_refused_with_their_true_rule() {
    let (server, gw) = setup().await;
    for (body, field, rule) in [
        (
            with(&[("max_redemptions", json!(4_294_967_296u64))]),
            "max_redemptions",
            "must be an integer from 1 to 4294967295",
        ),
        (
            with(&[("max_redemptions", json!(0))]),
            "max_redemptions",
            "must be an integer from 1 to 4294967295",
        ),
        (
            with(&[("expires_at", json!("9999-12-31T23:59:59-14:00"))]),
            "expires_at",
            "must be from 0001-01-02T00:00:00Z to 9999-12-30T23:59:59Z",
        ),
        (
            with(&[("expires_at", json!("2026-06-30T23:59:60Z"))]),
            "expires_at",
            "leap second",
        ),
        (
            with(&[(
                "discount",
                json!({ "amount_off": 9_007_199_254_740_993u64, "currency": "USD" }),
            )]),
            "discount.amount_off",
            "at most 999999999999999",
        ),
    ] {
        let a = post(&gw, CREATE, body.clone()).await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
        assert_eq!(problem_fields(field, &a), [field], "{}", a.body);
        let got = a.body["errors"][0]["rule"].as_str().unwrap();
        assert!(got.contains(rule), "{field}: {got}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());

    // The bounds themselves pass, and go out unchanged (Loop's date-time is RFC 3339 in UTC).
    let body = with(&[
        ("expires_at", json!("9999-12-30T23:59:59Z")),
        ("max_redemptions", json!(4_294_967_295u64)),
        ("discount", json!({ "percent_off": 20 })),
    ]);
    let a = post(&gw, "/v1/promo-codes?dry_run=true", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = &common::result(&a.body, "loop")["request"]["body"];
    assert_eq!(sent["valid_until"], "9999-12-30T23:59:59Z", "{sent}");
    assert_eq!(sent["max_redemptions"], 4_294_967_295u64, "{sent}");
    server.verify().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let (_server, gw) = setup().await;
    let r = gw.get_raw("/v1/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type, "application/problem+json");
    let body: Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(body["errors"][0]["field"], "path");
    assert_eq!(body["type"], "urn:promo-gateway:problem:not-found");

    let r = gw.get_raw("/v1/requests/1/x").await;
    assert_eq!(r.status, 404);
    let r = gw.get_raw("/v1/sync-jobs/1/retry").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.content_type, "application/problem+json");
    let body: Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(body["errors"][0]["field"], "method");
}
