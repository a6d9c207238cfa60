//! Issue 5, items 2 to 4, through the real router: reading codes back from the ledger (one by
//! name, or a filtered, paged list), no code sent twice to a vendor that has it, codes compared
//! without regard to case, and idempotency keys (replay, reuse, in flight, expiry). Vendors are
//! wiremock Loop servers: `loop` on server `a`, `loop2` on server `b`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use promo_gateway::clock::ManualClock;
use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

const TOKEN: &str = "loop-codes-secret-5e1a";
const TOKEN2: &str = "loop2-codes-secret-88d0";
const ENV: [(&str, &str); 2] = [("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)];

/// Campaign `spring` on both Loops, `autumn` on loop2 only.
const SPRING_BOTH: (&str, &str) = ("spring", "[upstreams.loop]\n\n[upstreams.loop2]\n");
const SPRING_LOOP: (&str, &str) = ("spring", "[upstreams.loop]\n");
const AUTUMN_LOOP2: (&str, &str) = ("autumn", "[upstreams.loop2]\n");

fn config(a: &MockServer, b: &MockServer) -> String {
    [
        common::upstream("loop", "loop", &a.uri(), ""),
        common::upstream("loop2", "loop", &b.uri(), ""),
    ]
    .join("\n")
}

/// Two strict Loop servers and a gateway on them with `mappings`.
async fn gateway(mappings: &[(&str, &str)]) -> (MockServer, MockServer, common::Gateway) {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    let gw = common::start(&config(&a, &b), mappings, &ENV).await;
    (a, b, gw)
}

/// A 20%-off `code` in `campaign`, sent to the campaign's upstreams.
fn in_campaign(code: &str, campaign: &str) -> Value {
    json!({ "code": code, "campaign": campaign, "discount": { "percent_off": 20 } })
}

/// Mounts a documented create of `code` that must not be made.
async fn expect_none(server: &MockServer, token: &str, code: &str) {
    common::loop_create(token, common::loop_body(code))
        .respond_with(common::loop_created("promo_never", code))
        .expect(0)
        .named(format!("{code} must not be sent"))
        .mount(server)
        .await;
}

fn server_error() -> ResponseTemplate {
    ResponseTemplate::new(500).set_body_json(json!({ "error": "internal", "message": "boom" }))
}

/// The codes of a listing page, in order.
fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

/// GET a listing that must succeed.
async fn list(gw: &common::Gateway, query: &str) -> Value {
    let (status, page) = gw.get(&format!("/v1/promo-codes?{query}")).await;
    assert_eq!(status, 200, "?{query}: {page}");
    page
}

/// A problem+json answer with `status`, type `slug`, naming `field` first.
async fn assert_problem(gw: &common::Gateway, path: &str, status: u16, slug: &str, field: &str) -> Value {
    let raw = gw.get_raw(path).await;
    assert_eq!(raw.status, status, "{path}: {}", raw.text);
    let problem: Value = serde_json::from_str(&raw.text).unwrap();
    common::problems::assert_problem(path, &problem, &raw.content_type, status, slug, field);
    problem
}

// ---------------------------------------------------------------------------------------------
// Reading codes back
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_code_reads_back_in_any_case_with_its_state_on_every_upstream() {
    let (a, b, gw) = gateway(&[SPRING_BOTH]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_answer(&b, TOKEN2, "SPRING20", server_error()).await;
    let (status, created) = gw.create(&in_campaign("SPRING20", "spring")).await;
    assert_eq!(status, 207, "{created}");

    let mut first: Option<Value> = None;
    for name in ["SPRING20", "spring20", "Spring20"] {
        let (status, code) = gw.get(&format!("/v1/promo-codes/{name}")).await;
        assert_eq!(status, 200, "{name}: {code}");
        assert_eq!(code["code"], "SPRING20", "as first accepted");
        assert_eq!(code["campaign"], "spring");
        assert_eq!(
            code["definition"],
            json!({ "code": "SPRING20", "campaign": "spring", "discount": { "percent_off": 20 } })
        );
        assert!(code["created_at"].is_string(), "{code}");
        let deliveries = code["deliveries"].as_object().unwrap();
        assert_eq!(deliveries.keys().collect::<Vec<_>>(), ["loop", "loop2"], "{code}");
        let loop_ = &code["deliveries"]["loop"];
        assert_eq!(loop_["status"], "created", "{loop_}");
        assert_eq!(loop_["vendor_id"], "promo_a");
        assert_eq!(loop_["attempts"], 1);
        assert!(loop_["updated_at"].is_string(), "{loop_}");
        assert!(loop_.get("job_id").is_none(), "not a job's: {loop_}");
        let loop2 = &code["deliveries"]["loop2"];
        assert_eq!(loop2["status"], "failed", "{loop2}");
        assert!(loop2.get("vendor_id").is_none(), "{loop2}");
        assert_eq!(loop2["attempts"], 1);
        assert_eq!(loop2["result"]["error"]["kind"], "upstream_error");
        assert_eq!(loop2["result"]["error"]["http_status"], 500);
        assert_eq!(
            loop2["result"],
            *common::result(&created, "loop2"),
            "the last outcome, as answered"
        );
        match &first {
            None => first = Some(code),
            Some(f) => assert_eq!(&code, f, "{name} reads the same record"),
        }
    }
    common::assert_calls(&a, 1, "loop").await;
    common::assert_calls(&b, 1, "loop2").await;
}

#[tokio::test]
async fn an_unknown_code_is_a_404_problem() {
    let (a, _b, gw) = gateway(&[SPRING_LOOP, AUTUMN_LOOP2]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    let (status, created) = gw.create(&in_campaign("SPRING20", "spring")).await;
    assert_eq!(status, 201, "{created}");

    let problem = assert_problem(&gw, "/v1/promo-codes/NOPE20", 404, "not-found", "path").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("/v1/promo-codes/NOPE20"),
        "{problem}"
    );
    // Held, but not in the campaign named.
    assert_problem(
        &gw,
        "/v1/promo-codes/SPRING20?campaign=autumn",
        404,
        "not-found",
        "path",
    )
    .await;
    assert_problem(
        &gw,
        "/v1/promo-codes/SPRING20?campaign=winter",
        404,
        "not-found",
        "path",
    )
    .await;
    // A misspelt parameter is named, not ignored.
    let problem = assert_problem(
        &gw,
        "/v1/promo-codes/SPRING20?campain=spring",
        400,
        "invalid-query",
        "campain",
    )
    .await;
    assert!(
        problem["errors"][0]["rule"].as_str().unwrap().contains("campaign"),
        "{problem}"
    );

    let (status, code) = gw.get("/v1/promo-codes/SPRING20?campaign=spring").await;
    assert_eq!(status, 200, "{code}");
    assert_eq!(code["deliveries"]["loop"]["vendor_id"], "promo_a");
}

/// The same code (in another case, which is allowed across campaigns) in two campaigns: by name
/// alone it is ambiguous (409 naming both), `?campaign=` picks one.
#[tokio::test]
async fn a_code_held_in_two_campaigns_needs_a_campaign_to_be_read() {
    let (a, b, gw) = gateway(&[SPRING_LOOP, AUTUMN_LOOP2]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_s").await;
    common::expect_loop_created(&b, TOKEN2, "Spring20", "promo_t").await;
    let (status, body) = gw.create(&in_campaign("SPRING20", "spring")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = gw.create(&in_campaign("Spring20", "autumn")).await;
    assert_eq!(status, 201, "another campaign may hold it in another case: {body}");

    let problem = assert_problem(&gw, "/v1/promo-codes/spring20", 409, "ambiguous-code", "campaign").await;
    let message = problem["errors"][0]["rule"].as_str().unwrap();
    assert!(message.contains("spring") && message.contains("autumn"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("?campaign="), "{problem}");

    for (campaign, code, upstream, vendor_id) in [
        ("spring", "SPRING20", "loop", "promo_s"),
        ("autumn", "Spring20", "loop2", "promo_t"),
    ] {
        let (status, record) = gw.get(&format!("/v1/promo-codes/SPRING20?campaign={campaign}")).await;
        assert_eq!(status, 200, "{campaign}: {record}");
        assert_eq!(record["code"], code);
        assert_eq!(record["campaign"], campaign);
        let deliveries = record["deliveries"].as_object().unwrap();
        assert_eq!(deliveries.keys().collect::<Vec<_>>(), [upstream], "{record}");
        assert_eq!(record["deliveries"][upstream]["status"], "created");
        assert_eq!(record["deliveries"][upstream]["vendor_id"], vendor_id);
    }
    common::assert_calls(&a, 1, "loop").await;
    common::assert_calls(&b, 1, "loop2").await;
}

/// Five codes in several states; each filter, alone and combined, lists exactly the codes it
/// should, oldest first.
#[tokio::test]
async fn codes_are_listed_by_campaign_upstream_and_status() {
    let (a, b, gw) = gateway(&[SPRING_BOTH, AUTUMN_LOOP2]).await;
    common::expect_loop_created(&a, TOKEN, "S1", "promo_s1_a").await;
    common::expect_loop_created(&b, TOKEN2, "S1", "promo_s1_b").await;
    common::expect_loop_created(&a, TOKEN, "S2", "promo_s2_a").await;
    common::expect_loop_answer(&b, TOKEN2, "S2", server_error()).await;
    common::expect_loop_created(&b, TOKEN2, "A1", "promo_a1").await;
    common::expect_loop_answer(
        &b,
        TOKEN2,
        "A2",
        ResponseTemplate::new(409).set_body_json(json!({ "error": "conflict", "message": "code exists" })),
    )
    .await;
    common::expect_loop_answer(&a, TOKEN, "X1", server_error()).await;
    for body in [
        in_campaign("S1", "spring"),
        in_campaign("S2", "spring"),
        in_campaign("A1", "autumn"),
        in_campaign("A2", "autumn"),
        common::percent20("X1", &["loop"]),
    ] {
        let (status, answer) = gw.create(&body).await;
        assert!([201, 207, 502].contains(&status), "{status}: {answer}");
    }

    for (query, expected) in [
        ("", vec!["S1", "S2", "A1", "A2", "X1"]),
        ("campaign=spring", vec!["S1", "S2"]),
        ("campaign=autumn", vec!["A1", "A2"]),
        ("campaign=winter", vec![]),
        ("upstream=loop", vec!["S1", "S2", "X1"]),
        ("upstream=loop2", vec!["S1", "S2", "A1", "A2"]),
        ("status=created", vec!["S1", "S2", "A1"]),
        ("status=failed", vec!["S2", "X1"]),
        ("status=failed&upstream=loop2", vec!["S2"]),
        ("status=failed&upstream=loop", vec!["X1"]),
        ("status=already_exists", vec!["A2"]),
        ("status=created&campaign=autumn", vec!["A1"]),
        ("campaign=spring&upstream=loop&status=failed", vec![]),
        ("status=pending", vec![]),
    ] {
        let page = list(&gw, query).await;
        assert_eq!(codes(&page), expected, "?{query}");
        assert!(page.get("next_cursor").is_none(), "?{query}: one page: {page}");
    }

    // Each item is the whole record, as GET /v1/promo-codes/{code} shows it.
    let page = list(&gw, "status=failed").await;
    let s2 = &page["items"][0];
    assert_eq!(s2["campaign"], "spring");
    assert_eq!(s2["deliveries"]["loop"]["vendor_id"], "promo_s2_a");
    assert_eq!(s2["deliveries"]["loop2"]["status"], "failed");
    let (_, one) = gw.get("/v1/promo-codes/S2").await;
    assert_eq!(*s2, one);
    let x1 = &page["items"][1];
    assert!(x1.get("campaign").is_none(), "no campaign: {x1}");
    assert_eq!(x1["deliveries"]["loop"]["status"], "failed");
    common::assert_calls(&a, 3, "loop").await;
    common::assert_calls(&b, 4, "loop2").await;
}

/// Seven codes of `spring` with one of `autumn` between them: limit=3 pages them 3 + 3 + 1, in
/// order, each once, the filter kept across pages, and the last page has no next_cursor.
#[tokio::test]
async fn a_listing_pages_with_a_cursor_without_gaps_or_repeats() {
    let (a, b, gw) = gateway(&[SPRING_LOOP, AUTUMN_LOOP2]).await;
    let spring: Vec<String> = (1..=7).map(|i| format!("P{i:02}")).collect();
    for code in &spring {
        common::expect_loop_created(&a, TOKEN, code, &format!("promo_{code}")).await;
    }
    common::expect_loop_created(&b, TOKEN2, "A01", "promo_A01").await;
    for (i, code) in spring.iter().enumerate() {
        if i == 4 {
            let (status, body) = gw.create(&in_campaign("A01", "autumn")).await;
            assert_eq!(status, 201, "{body}");
        }
        let (status, body) = gw.create(&in_campaign(code, "spring")).await;
        assert_eq!(status, 201, "{body}");
    }

    let mut pages = Vec::new();
    let mut query = "campaign=spring&limit=3".to_owned();
    loop {
        let page = list(&gw, &query).await;
        pages.push(codes(&page));
        assert!(pages.len() <= 3, "too many pages: {pages:?}");
        match page.get("next_cursor") {
            None => break,
            Some(cursor) => {
                let cursor = cursor.as_str().expect("a string cursor");
                query = format!("campaign=spring&limit=3&cursor={cursor}");
            }
        }
    }
    assert_eq!(
        pages,
        [vec!["P01", "P02", "P03"], vec!["P04", "P05", "P06"], vec!["P07"]],
        "3 + 3 + 1, in order"
    );
    assert_eq!(pages.concat(), spring, "no gaps, no repeats");

    // A page that ends exactly at the last code is the last page.
    let page = list(&gw, "campaign=spring&limit=7").await;
    assert_eq!(codes(&page), spring);
    assert!(page.get("next_cursor").is_none(), "{page}");

    // Unfiltered, the autumn code is in its place.
    let first = list(&gw, "limit=5").await;
    assert_eq!(codes(&first), ["P01", "P02", "P03", "P04", "A01"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = list(&gw, &format!("limit=5&cursor={cursor}")).await;
    assert_eq!(codes(&rest), ["P05", "P06", "P07"]);
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    common::assert_calls(&a, 7, "loop").await;
    common::assert_calls(&b, 1, "loop2").await;
}

#[tokio::test]
async fn bad_listing_parameters_are_named_in_a_problem() {
    let (a, b, gw) = gateway(&[SPRING_LOOP]).await;
    for (query, field) in [
        ("foo=1", "foo"),
        ("campain=spring", "campain"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=three", "limit"),
        ("limit=-1", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
        ("status=bogus", "status"),
        ("status=would_send", "status"),
        ("status=CREATED", "status"),
        ("limit=1&limit=2", "limit"),
    ] {
        let problem = assert_problem(&gw, &format!("/v1/promo-codes?{query}"), 400, "invalid-query", field).await;
        let message = problem["errors"][0]["rule"].as_str().unwrap();
        assert!(!message.is_empty(), "{problem}");
        if field == "status" {
            assert!(
                message.contains("already_exists") && !message.contains("would_send,"),
                "{problem}"
            );
        }
        if query == "limit=1&limit=2" {
            assert!(message.contains("more than once"), "{problem}");
        }
    }
    // Limit and cursor are both named at once.
    let raw = gw.get_raw("/v1/promo-codes?limit=0&cursor=zzz").await;
    assert_eq!(raw.status, 400, "{}", raw.text);
    let problem: Value = serde_json::from_str(&raw.text).unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["limit", "cursor"], "{problem}");

    // The bounds themselves are fine, on an empty ledger.
    for query in ["limit=1", "limit=1000", "status=pending&upstream=loop&campaign=spring"] {
        let page = list(&gw, query).await;
        assert_eq!(page["items"], json!([]), "?{query}");
        assert!(page.get("next_cursor").is_none());
    }
    common::assert_calls(&a, 0, "loop").await;
    common::assert_calls(&b, 0, "loop2").await;
}

// ---------------------------------------------------------------------------------------------
// No doubles
// ---------------------------------------------------------------------------------------------

/// A code created on `loop` is never sent there again: a second create says so; adding `loop2`
/// later sends only to loop2 (the way a merchant adds a platform).
#[tokio::test]
async fn a_created_code_is_not_sent_again() {
    let (a, b, gw) = gateway(&[]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_created(&b, TOKEN2, "SPRING20", "promo_b").await;
    let (status, first) = gw.create(&common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(common::result(&first, "loop")["attempts"], 1);

    let (status, second) = gw.create(&common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["request_id"], first["request_id"]);
    let r = common::result(&second, "loop");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_a");
    assert_eq!(r["attempts"], 0, "{r}");
    assert_eq!(common::warning_fields(r), ["code"]);
    let w = common::warning(r, "code");
    assert!(
        w.contains("already created on loop by an earlier request or sync job") && w.contains("not sent again"),
        "{w}"
    );
    common::assert_calls(&a, 1, "loop after the repeat").await;
    common::assert_calls(&b, 0, "loop2 after the repeat").await;

    // The same code for one more target.
    let (status, third) = gw.create(&common::percent20("SPRING20", &["loop", "loop2"])).await;
    assert_eq!(status, 201, "{third}");
    assert_eq!(common::result(&third, "loop")["attempts"], 0);
    assert!(common::warning(common::result(&third, "loop"), "code").contains("not sent again"));
    let r = common::result(&third, "loop2");
    assert_eq!(
        (&r["status"], &r["vendor_id"], &r["attempts"]),
        (&json!("created"), &json!("promo_b"), &json!(1))
    );
    assert_eq!(r["warnings"], json!([]));

    let (_, record) = gw.get("/v1/promo-codes/SPRING20").await;
    assert_eq!(record["deliveries"]["loop"]["vendor_id"], "promo_a");
    assert_eq!(record["deliveries"]["loop"]["attempts"], 1, "{record}");
    assert_eq!(record["deliveries"]["loop2"]["vendor_id"], "promo_b");
    common::assert_calls(&a, 1, "loop in all").await;
    common::assert_calls(&b, 1, "loop2 in all").await;
}

/// A vendor's 409 is `already_exists`, and such a target is not called again either.
#[tokio::test]
async fn a_code_the_vendor_already_has_is_already_exists_and_not_sent_again() {
    let (a, _b, gw) = gateway(&[]).await;
    common::expect_loop_answer(
        &a,
        TOKEN,
        "SPRING20",
        ResponseTemplate::new(409)
            .set_body_json(json!({ "error": "conflict", "message": "a promo with this code exists" })),
    )
    .await;
    let body = common::percent20("SPRING20", &["loop"]);
    // The summary status of an all-`already_exists` create is left out here on purpose (see report).
    let (_, first) = gw.create(&body).await;
    let r = common::result(&first, "loop");
    assert_eq!(r["status"], "already_exists", "{r}");
    assert_eq!(r["error"]["kind"], "already_exists");
    assert_eq!(r["error"]["http_status"], 409);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a promo with this code exists"),
        "{r}"
    );

    let (_, second) = gw.create(&body).await;
    let r = common::result(&second, "loop");
    assert_eq!(r["status"], "already_exists", "{r}");
    assert_eq!(r["attempts"], 0);
    let w = common::warning(r, "code");
    assert!(w.contains("on loop") && w.contains("not sent again"), "{w}");

    let (_, record) = gw.get("/v1/promo-codes/spring20").await;
    assert_eq!(record["deliveries"]["loop"]["status"], "already_exists", "{record}");
    assert!(record["deliveries"]["loop"].get("vendor_id").is_none());
    common::assert_calls(&a, 1, "loop").await;
}

/// `spring20` beside `SPRING20` in one campaign is refused before anything is written or sent.
#[tokio::test]
async fn another_case_of_a_held_code_is_a_conflict() {
    let (a, _b, gw) = gateway(&[SPRING_LOOP]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    expect_none(&a, TOKEN, "spring20").await;
    let (status, first) = gw.create(&in_campaign("SPRING20", "spring")).await;
    assert_eq!(status, 201, "{first}");
    let first_id = first["request_id"].as_i64().unwrap();

    let raw = gw
        .post_raw("/v1/promo-codes", in_campaign("spring20", "spring").to_string())
        .await;
    assert_eq!(raw.status, 409, "{}", raw.text);
    assert_eq!(raw.content_type, "application/problem+json");
    let problem: Value = serde_json::from_str(&raw.text).unwrap();
    assert_eq!(problem["type"], "urn:promo-gateway:problem:code-conflict");
    assert_eq!(problem["errors"][0]["field"], "code");
    let message = problem["errors"][0]["rule"].as_str().unwrap();
    assert!(
        message.contains("`SPRING20`") && message.contains("without regard to case"),
        "{problem}"
    );

    // Nothing recorded: the ledger holds the original only, and no request was added.
    let page = list(&gw, "").await;
    assert_eq!(codes(&page), ["SPRING20"]);
    let (status, record) = gw.get("/v1/promo-codes/spring20").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["code"], "SPRING20");
    assert_eq!(record["deliveries"]["loop"]["vendor_id"], "promo_a");
    assert_eq!(record["deliveries"]["loop"]["attempts"], 1);
    let (status, _) = gw.get(&format!("/v1/requests/{}", first_id + 1)).await;
    assert_eq!(status, 404);
    common::assert_calls(&a, 1, "loop").await;
}

/// Look-alike codes: a compatibility form (the Kelvin sign for K, full-width letters) folds to
/// the held code under NFKC and case folding and clashes with 409 like another case does; a
/// code with an invisible format character (zero-width space, BOM, a bidi control) is refused
/// with 422 naming `code` and the rule. Nothing is sent or recorded for either.
#[tokio::test]
async fn look_alike_codes_clash_or_are_refused() {
    let (a, _b, gw) = gateway(&[SPRING_LOOP]).await;
    common::expect_loop_created(&a, TOKEN, "KEY20", "promo_a").await;
    let (status, first) = gw.create(&in_campaign("KEY20", "spring")).await;
    assert_eq!(status, 201, "{first}");

    for look_alike in [
        "\u{212A}EY20",
        "\u{FF2B}\u{FF25}\u{FF39}\u{FF12}\u{FF10}",
        "\u{212A}ey20",
    ] {
        expect_none(&a, TOKEN, look_alike).await;
        let (status, problem) = gw.create(&in_campaign(look_alike, "spring")).await;
        assert_eq!(status, 409, "{look_alike}: {problem}");
        assert_eq!(problem["type"], "urn:promo-gateway:problem:code-conflict");
        assert_eq!(problem["errors"][0]["field"], "code");
        let rule = problem["errors"][0]["rule"].as_str().unwrap();
        assert!(rule.contains("`KEY20`") && rule.contains("compatibility"), "{problem}");
    }
    for (invisible, named) in [
        ("KEY\u{200B}20", "U+200B"),
        ("\u{FEFF}KEY20", "U+FEFF"),
        ("KEY\u{202E}02", "U+202E"),
        ("KEY\u{2066}20", "U+2066"),
        ("KEY\u{00AD}20", "U+00AD"),
    ] {
        expect_none(&a, TOKEN, invisible).await;
        for path in ["/v1/promo-codes", "/v1/promo-codes?dry_run=true"] {
            let (status, problem) = gw.post(path, in_campaign(invisible, "spring").to_string()).await;
            assert_eq!(status, 422, "{named}: {problem}");
            assert_eq!(problem["errors"][0]["field"], "code", "{problem}");
            let rule = problem["errors"][0]["rule"].as_str().unwrap();
            assert!(rule.contains("format characters") && rule.contains(named), "{rule}");
        }
    }
    let page = list(&gw, "").await;
    assert_eq!(codes(&page), ["KEY20"]);
    // Reading back by a look-alike finds the held code.
    let (status, record) = gw.get("/v1/promo-codes/%E2%84%AAEY20").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["code"], "KEY20");
    common::assert_calls(&a, 1, "loop").await;
}

/// A code cannot change once accepted: the same name with another discount (or another
/// restriction) is refused, and nothing is sent.
#[tokio::test]
async fn the_same_code_with_another_definition_is_a_conflict() {
    let (a, _b, gw) = gateway(&[]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::loop_create(TOKEN, json!({ "code": "SPRING20", "percent_off": 30 }))
        .respond_with(common::loop_created("promo_never", "SPRING20"))
        .expect(0)
        .mount(&a)
        .await;
    let (status, first) = gw.create(&common::percent20("SPRING20", &["loop"])).await;
    assert_eq!(status, 201, "{first}");

    for other in [
        json!({ "code": "SPRING20", "discount": { "percent_off": 30 }, "targets": ["loop"] }),
        json!({ "code": "SPRING20", "discount": { "percent_off": 20 }, "max_redemptions": 5, "targets": ["loop"] }),
        json!({ "code": "spring20", "discount": { "percent_off": 30 }, "targets": ["loop"] }),
    ] {
        let (status, problem) = gw.create(&other).await;
        assert_eq!(status, 409, "{other}: {problem}");
        assert_eq!(problem["type"], "urn:promo-gateway:problem:code-conflict");
        assert_eq!(problem["errors"][0]["field"], "code");
        assert!(
            problem["errors"][0]["rule"].as_str().unwrap().contains("`SPRING20`"),
            "{problem}"
        );
    }
    let (_, problem) = gw
        .create(&json!({ "code": "SPRING20", "discount": { "percent_off": 30 }, "targets": ["loop"] }))
        .await;
    assert!(
        problem["errors"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("different definition"),
        "{problem}"
    );

    let (_, record) = gw.get("/v1/promo-codes/SPRING20").await;
    assert_eq!(
        record["definition"],
        json!({ "code": "SPRING20", "discount": { "percent_off": 20 } })
    );
    assert_eq!(codes(&list(&gw, "").await), ["SPRING20"]);
    common::assert_calls(&a, 1, "loop").await;
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys
// ---------------------------------------------------------------------------------------------

/// The same key and the same body (also laid out differently) replay the first answer; each
/// upstream saw one call.
#[tokio::test]
async fn a_key_replays_the_first_answer_and_upstreams_see_one_call() {
    let (a, b, gw) = gateway(&[SPRING_BOTH]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_created(&b, TOKEN2, "SPRING20", "promo_b").await;
    let body = in_campaign("SPRING20", "spring");

    let (status, replayed, first) = gw.create_with_key("order-7781", &body).await;
    assert_eq!((status, replayed), (201, None), "{first}");
    assert_eq!(common::result(&first, "loop")["vendor_id"], "promo_a");
    assert_eq!(common::result(&first, "loop2")["vendor_id"], "promo_b");

    let (status, replayed, second) = gw.create_with_key("order-7781", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")), "{second}");
    assert_eq!(second, first);

    let relaid = r#"{ "discount": {"percent_off": 20},
        "campaign": "spring",   "code": "SPRING20" }"#;
    let (status, replayed, third) = gw.create_with_key_raw("order-7781", relaid.into()).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")), "{third}");
    assert_eq!(third, first);

    let (_, record) = gw.get("/v1/promo-codes/SPRING20").await;
    assert_eq!(record["deliveries"]["loop"]["attempts"], 1, "{record}");
    assert_eq!(record["deliveries"]["loop2"]["attempts"], 1, "{record}");
    common::assert_calls(&a, 1, "loop").await;
    common::assert_calls(&b, 1, "loop2").await;
}

/// A key names one body: another body under it is refused (422), even for the same code with
/// one more target, and sends nothing; under a fresh key that body runs, sending only loop2.
#[tokio::test]
async fn a_key_with_another_body_is_refused() {
    let (a, b, gw) = gateway(&[]).await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_created(&b, TOKEN2, "SPRING20", "promo_b").await;
    let (status, _, first) = gw
        .create_with_key("k-1", &common::percent20("SPRING20", &["loop"]))
        .await;
    assert_eq!(status, 201, "{first}");
    let both = common::percent20("SPRING20", &["loop", "loop2"]);

    let (status, replayed, problem) = gw.create_with_key("k-1", &both).await;
    assert_eq!((status, replayed), (422, None), "{problem}");
    assert_eq!(problem["type"], "urn:promo-gateway:problem:idempotency-key-reused");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    let message = problem["errors"][0]["rule"].as_str().unwrap();
    assert!(
        message.contains(&format!("request {}", first["request_id"])) && message.contains("different body"),
        "{problem}"
    );
    common::assert_calls(&b, 0, "loop2 under the reused key").await;

    let (status, replayed, fresh) = gw.create_with_key("k-2", &both).await;
    assert_eq!((status, replayed), (201, None), "{fresh}");
    assert_eq!(common::result(&fresh, "loop")["attempts"], 0);
    assert!(common::warning(common::result(&fresh, "loop"), "code").contains("not sent again"));
    assert_eq!(common::result(&fresh, "loop2")["vendor_id"], "promo_b");
    common::assert_calls(&a, 1, "loop").await;
    common::assert_calls(&b, 1, "loop2").await;
}

/// While a create is held in flight (its vendor answers slowly), a second request with its key
/// gets 409, the record shows it pending, and a request without a key does not send the code a
/// second time; once it is done the key replays its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_flight_gets_409() {
    let (a, _b, gw) = gateway(&[]).await;
    common::expect_loop_answer(
        &a,
        TOKEN,
        "SPRING20",
        common::loop_created("promo_a", "SPRING20").set_delay(Duration::from_millis(700)),
    )
    .await;
    let body = common::percent20("SPRING20", &["loop"]);

    let (first, (second, record, keyless)) = tokio::join!(gw.create_with_key("k-slow", &body), async {
        common::wait_for_requests(&a, 1).await;
        let second = gw.create_with_key("k-slow", &body).await;
        let record = gw.get("/v1/requests/1").await;
        let keyless = gw.create(&body).await;
        (second, record, keyless)
    });
    assert_eq!(first.0, 201, "{}", first.2);
    assert_eq!(first.2["request_id"], 1, "the first request of a fresh ledger");

    let (status, replayed, problem) = second;
    assert_eq!((status, replayed), (409, None), "{problem}");
    assert_eq!(problem["type"], "urn:promo-gateway:problem:idempotency-in-progress");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert!(
        problem["detail"].as_str().unwrap().contains("GET /v1/requests/1"),
        "{problem}"
    );

    let (status, record) = record;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["finished"], false, "{record}");
    assert_eq!(record["pending"], json!(["loop"]));

    // Without a key, a new request: the code is on its way to loop already, so it is not sent.
    let (_, keyless) = keyless;
    let r = common::result(&keyless, "loop");
    assert_eq!(r["status"], "pending", "{r}");
    assert_eq!(r["attempts"], 0);
    assert!(
        common::warning(r, "code").contains("delivering this code to loop now"),
        "{r}"
    );

    let (status, replayed, again) = gw.create_with_key("k-slow", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")), "{again}");
    assert_eq!(again, first.2);
    let (_, record) = gw.get("/v1/requests/1").await;
    assert_eq!(
        (&record["finished"], &record["pending"]),
        (&json!(true), &json!([])),
        "{record}"
    );
    common::assert_calls(&a, 1, "loop").await;
}

/// Keys expire after `[ledger] idempotency_key_hours` (24 by default), on the gateway's clock:
/// just before, the key replays the first answer (with its failure); just after, it is forgotten
/// and the create runs again as a new one, where loop (created) is not called again and loop2
/// (failed) is. The old create keeps its record.
#[tokio::test]
async fn an_expired_key_is_forgotten_and_the_create_runs_again() {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    common::expect_loop_failure_then_created(&b, TOKEN2, "SPRING20", server_error(), "promo_b").await;
    let clock = ManualClock::new(chrono::Utc::now());
    let gw = common::start_with_clock(&config(&a, &b), &[], &ENV, Arc::new(clock.clone())).await;
    let body = common::percent20("SPRING20", &["loop", "loop2"]);

    let (status, _, first) = gw.create_with_key("k-day", &body).await;
    assert_eq!(status, 207, "{first}");

    clock.advance(Duration::from_secs(24 * 3600 - 60));
    let (status, replayed, replay) = gw.create_with_key("k-day", &body).await;
    assert_eq!(
        (status, replayed.as_deref()),
        (207, Some("true")),
        "still within 24 h: {replay}"
    );
    assert_eq!(replay, first);
    common::assert_calls(&b, 1, "loop2 before expiry").await;

    clock.advance(Duration::from_secs(120));
    let (status, replayed, second) = gw.create_with_key("k-day", &body).await;
    assert_eq!((status, replayed), (201, None), "after 24 h the key is new: {second}");
    assert_ne!(second["request_id"], first["request_id"]);
    let r = common::result(&second, "loop");
    assert_eq!(
        (&r["status"], &r["vendor_id"], &r["attempts"]),
        (&json!("created"), &json!("promo_a"), &json!(0))
    );
    assert!(common::warning(r, "code").contains("not sent again"), "{r}");
    let r = common::result(&second, "loop2");
    assert_eq!(
        (&r["status"], &r["vendor_id"], &r["attempts"]),
        (&json!("created"), &json!("promo_b"), &json!(1))
    );

    // Now the key names the second create.
    let (status, replayed, third) = gw.create_with_key("k-day", &body).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")));
    assert_eq!(third, second);
    let (status, old) = gw.get(&format!("/v1/requests/{}", first["request_id"])).await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["results"], first["results"]);
    common::assert_calls(&a, 1, "loop").await;
    common::assert_calls(&b, 2, "loop2").await;
}

/// `[ledger] idempotency_key_hours` sets the window.
#[tokio::test]
async fn the_key_window_is_configurable() {
    let a = common::strict_server().await;
    common::expect_loop_created(&a, TOKEN, "SPRING20", "promo_a").await;
    let clock = ManualClock::new(chrono::Utc::now());
    let config = format!(
        "[ledger]\nidempotency_key_hours = 1\n\n{}",
        common::upstream("loop", "loop", &a.uri(), "")
    );
    let gw = common::start_with_clock(&config, &[], &ENV, Arc::new(clock.clone())).await;
    let body = common::percent20("SPRING20", &["loop"]);

    let (status, _, first) = gw.create_with_key("k-hour", &body).await;
    assert_eq!(status, 201, "{first}");
    clock.advance(Duration::from_secs(59 * 60));
    let (_, replayed, replay) = gw.create_with_key("k-hour", &body).await;
    assert_eq!(replayed.as_deref(), Some("true"), "{replay}");
    assert_eq!(replay, first);

    clock.advance(Duration::from_secs(2 * 60));
    let (status, replayed, second) = gw.create_with_key("k-hour", &body).await;
    assert_eq!((status, replayed), (201, None), "{second}");
    assert_ne!(second["request_id"], first["request_id"]);
    assert_eq!(
        common::result(&second, "loop")["attempts"],
        0,
        "created already: not sent again"
    );
    common::assert_calls(&a, 1, "loop").await;
}
