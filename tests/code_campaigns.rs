//! One upstream holds a code (in any case) for one campaign only, through the real router. A
//! vendor keeps one code per name: had campaign `summer` sent `SPRING20` (30% off) to a Loop that
//! holds campaign `spring`'s `SPRING20` (20% off), Loop would answer 409 and the gateway would
//! report `already_exists` for a code carrying another campaign's discount. Such a create, or a
//! sync job item, is refused with 409/422 before anything is written or sent. Vendors are
//! wiremock Loop servers: `loop` on server `a`, `loop2` on server `b`.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

use common::jobs::{post_json_job, wait_done};

const TOKEN: &str = "loop-campaigns-secret-41c7";
const TOKEN2: &str = "loop2-campaigns-secret-9b02";
const ENV: [(&str, &str); 2] = [("LOOP_TOKEN", TOKEN), ("LOOP2_TOKEN", TOKEN2)];

/// Both campaigns are mapped on both Loops (Loop takes the discount inline).
const SPRING: (&str, &str) = ("spring", "[upstreams.loop]\n\n[upstreams.loop2]\n");
const SUMMER: (&str, &str) = ("summer", "[upstreams.loop]\n\n[upstreams.loop2]\n");

/// Two strict Loop servers and a gateway on them with campaigns `spring` and `summer`.
async fn gateway() -> (MockServer, MockServer, common::Gateway) {
    let (a, b) = (common::strict_server().await, common::strict_server().await);
    let config = [
        common::upstream("loop", "loop", &a.uri(), ""),
        common::upstream("loop2", "loop", &b.uri(), ""),
    ]
    .join("\n");
    let gw = common::start(&config, &[SPRING, SUMMER], &ENV).await;
    (a, b, gw)
}

/// `spring`'s codes are 20% off, `summer`'s 30% off.
fn percent(campaign: &str) -> u32 {
    if campaign == "spring" {
        20
    } else {
        30
    }
}

/// A create of `code` in `campaign` to `targets`.
fn create(code: &str, campaign: &str, targets: &[&str]) -> Value {
    json!({ "code": code, "campaign": campaign, "discount": { "percent_off": percent(campaign) }, "targets": targets })
}

/// Loop's documented body for `code` of `campaign`.
fn loop_body(code: &str, campaign: &str) -> Value {
    json!({ "code": code, "percent_off": percent(campaign) })
}

/// Mounts on `server` the documented create of `code` of `campaign`, made exactly `times`.
async fn expect(server: &MockServer, token: &str, code: &str, campaign: &str, answer: ResponseTemplate, times: u64) {
    common::loop_create(token, loop_body(code, campaign))
        .respond_with(answer)
        .expect(times)
        .named(format!("{code} of {campaign} on {}", server.uri()))
        .mount(server)
        .await;
}

fn created(code: &str) -> ResponseTemplate {
    common::loop_created(&format!("promo_{code}"), code)
}

/// Asserts a 409 `code-conflict` naming `code` held by `campaign` at exactly `upstreams`.
fn assert_other_campaign(status: u16, problem: &Value, code: &str, campaign: &str, upstreams: &[&str]) {
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "urn:promo-gateway:problem:code-conflict", "{problem}");
    assert_eq!(problem["status"], 409);
    assert_eq!(problem["errors"][0]["field"], "code", "{problem}");
    let rule = problem["errors"][0]["rule"].as_str().unwrap();
    assert!(
        rule.contains(&format!(
            "`{code}` of campaign `{campaign}` is held at {}",
            upstreams.join(", ")
        )),
        "{problem}"
    );
    assert!(problem["detail"].as_str().unwrap().contains(rule), "{problem}");
    assert_eq!(
        problem["conflict"],
        json!({ "kind": "other_campaign", "held_by": [{ "campaign": campaign, "code": code, "upstreams": upstreams }] }),
        "{problem}"
    );
}

/// The codes the ledger lists, each as (code, campaign, upstreams with their status).
async fn ledger(gw: &common::Gateway) -> Vec<(String, String, Value)> {
    let (status, page) = gw.get("/v1/promo-codes?limit=100").await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|c| {
            let deliveries: serde_json::Map<String, Value> = c["deliveries"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(u, d)| (u.clone(), d["status"].clone()))
                .collect();
            (
                c["code"].as_str().unwrap().to_owned(),
                c["campaign"].as_str().unwrap_or_default().to_owned(),
                Value::Object(deliveries),
            )
        })
        .collect()
}

/// `summer`'s `SPRING20` (and `spring20`) to the Loop that holds `spring`'s is refused, naming
/// `spring` and `loop`; nothing is written and Loop is called once, for `spring`.
#[tokio::test]
async fn another_campaigns_code_at_the_same_upstream_is_refused() {
    let (a, b, gw) = gateway().await;
    expect(&a, TOKEN, "SPRING20", "spring", created("SPRING20"), 1).await;
    expect(&a, TOKEN, "SPRING20", "summer", created("SPRING20"), 0).await;
    expect(&a, TOKEN, "spring20", "summer", created("spring20"), 0).await;
    expect(&b, TOKEN2, "SPRING20", "summer", created("SPRING20"), 0).await;

    let (status, first) = gw.create(&create("SPRING20", "spring", &["loop"])).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(common::result(&first, "loop")["status"], "created", "{first}");
    let first_id = first["request_id"].as_i64().unwrap();

    for code in ["SPRING20", "spring20"] {
        let raw = gw
            .post_raw("/v1/promo-codes", create(code, "summer", &["loop"]).to_string())
            .await;
        assert_eq!(raw.content_type, "application/problem+json");
        let problem: Value = serde_json::from_str(&raw.text).unwrap();
        assert_other_campaign(raw.status, &problem, "SPRING20", "spring", &["loop"]);
    }
    // With loop2 as well, the whole create is refused (loop2 is not called either), and the
    // problem names only the upstream where the clash is.
    let (status, problem) = gw.create(&create("SPRING20", "summer", &["loop", "loop2"])).await;
    assert_other_campaign(status, &problem, "SPRING20", "spring", &["loop"]);
    // By the campaign's default targets (its mapping names both Loops), the same.
    let (status, problem) = gw
        .create(&json!({ "code": "SPRING20", "campaign": "summer", "discount": { "percent_off": 30 } }))
        .await;
    assert_other_campaign(status, &problem, "SPRING20", "spring", &["loop"]);

    // Nothing recorded: only spring's code, the name alone is not ambiguous, no request added.
    assert_eq!(
        ledger(&gw).await,
        [("SPRING20".into(), "spring".into(), json!({ "loop": "created" }))]
    );
    let (status, record) = gw.get("/v1/promo-codes/spring20").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["campaign"], "spring");
    assert_eq!(record["deliveries"]["loop"]["vendor_id"], "promo_SPRING20");
    let (status, record) = gw.get("/v1/promo-codes/SPRING20?campaign=summer").await;
    assert_eq!(status, 404, "{record}");
    let (status, _) = gw.get(&format!("/v1/requests/{}", first_id + 1)).await;
    assert_eq!(status, 404);
    assert_eq!(common::received(&a).await, 1);
    assert_eq!(common::received(&b).await, 0);
}

/// The same code of another campaign at another upstream is no clash: `summer`'s `spring20`
/// goes to loop2 while `spring`'s `SPRING20` is on loop. From then on each holds its own Loop:
/// neither campaign may send the code to the other's.
#[tokio::test]
async fn another_campaigns_code_at_another_upstream_is_created() {
    let (a, b, gw) = gateway().await;
    expect(&a, TOKEN, "SPRING20", "spring", created("SPRING20"), 1).await;
    expect(&b, TOKEN2, "spring20", "summer", created("spring20"), 1).await;
    expect(&b, TOKEN2, "SPRING20", "spring", created("SPRING20"), 0).await;

    let (status, body) = gw.create(&create("SPRING20", "spring", &["loop"])).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = gw.create(&create("spring20", "summer", &["loop2"])).await;
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop2");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_spring20", "{body}");
    assert_eq!(r["attempts"], 1, "{body}");

    // spring may not follow summer to loop2, nor summer spring to loop.
    let (status, problem) = gw.create(&create("SPRING20", "spring", &["loop2"])).await;
    assert_other_campaign(status, &problem, "spring20", "summer", &["loop2"]);
    let (status, problem) = gw.create(&create("spring20", "summer", &["loop"])).await;
    assert_other_campaign(status, &problem, "SPRING20", "spring", &["loop"]);
    // Sending each campaign's own code again to its own Loop is still the ordinary "already
    // created", with no call.
    let (status, body) = gw.create(&create("SPRING20", "spring", &["loop"])).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["attempts"], 0, "{body}");

    assert_eq!(
        ledger(&gw).await,
        [
            ("SPRING20".into(), "spring".into(), json!({ "loop": "created" })),
            ("spring20".into(), "summer".into(), json!({ "loop2": "created" })),
        ]
    );
    assert_eq!(common::received(&a).await, 1);
    assert_eq!(common::received(&b).await, 1);
}

/// A delivery in flight holds the upstream as a delivered code does: while `spring`'s call to
/// loop is waiting for its answer, `summer`'s create of the code to loop is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_flight_holds_the_upstream() {
    let (a, _b, gw) = gateway().await;
    expect(
        &a,
        TOKEN,
        "SPRING20",
        "spring",
        created("SPRING20").set_delay(Duration::from_millis(600)),
        1,
    )
    .await;
    expect(&a, TOKEN, "SPRING20", "summer", created("SPRING20"), 0).await;

    let first = {
        let gw = common::Gateway::at(gw.base.clone());
        tokio::spawn(async move { gw.create(&create("SPRING20", "spring", &["loop"])).await })
    };
    common::wait_for_requests(&a, 1).await;
    let (status, problem) = gw.create(&create("SPRING20", "summer", &["loop"])).await;
    assert_other_campaign(status, &problem, "SPRING20", "spring", &["loop"]);

    let (status, body) = first.await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");
    assert_eq!(
        ledger(&gw).await,
        [("SPRING20".into(), "spring".into(), json!({ "loop": "created" }))]
    );
    assert_eq!(common::received(&a).await, 1);
}

/// A code the vendor refused holds nothing: another campaign may then deliver it there, after
/// which the first campaign's second try is the one refused.
#[tokio::test]
async fn a_refused_delivery_holds_nothing() {
    let (a, _b, gw) = gateway().await;
    let refused = ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid", "message": "not now" }));
    expect(&a, TOKEN, "SPRING20", "spring", refused, 1).await;
    expect(&a, TOKEN, "SPRING20", "summer", created("SPRING20"), 1).await;

    let (status, body) = gw.create(&create("SPRING20", "spring", &["loop"])).await;
    assert_eq!(status, 502, "no target took the code: {body}");
    assert_eq!(common::result(&body, "loop")["status"], "rejected", "{body}");

    let (status, body) = gw.create(&create("SPRING20", "summer", &["loop"])).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "created", "{body}");

    let (status, problem) = gw.create(&create("SPRING20", "spring", &["loop"])).await;
    assert_other_campaign(status, &problem, "SPRING20", "summer", &["loop"]);
    assert_eq!(
        ledger(&gw).await,
        [
            ("SPRING20".into(), "spring".into(), json!({ "loop": "rejected" })),
            ("SPRING20".into(), "summer".into(), json!({ "loop": "created" })),
        ]
    );
    assert_eq!(common::received(&a).await, 2);
}

/// A sync job item whose code another campaign holds at a target is refused as any clashing
/// item is: 422 naming the item, the whole job refused, nothing written or sent. The same code
/// to another upstream only is accepted and delivered.
#[tokio::test]
async fn a_job_item_held_by_another_campaign_refuses_the_job() {
    let (a, b, gw) = gateway().await;
    expect(&a, TOKEN, "SPRING20", "spring", created("SPRING20"), 1).await;
    expect(&a, TOKEN, "SUMMER-1", "summer", created("SUMMER-1"), 0).await;
    expect(&a, TOKEN, "spring20", "summer", created("spring20"), 0).await;
    expect(&b, TOKEN2, "SUMMER-1", "summer", created("SUMMER-1"), 1).await;
    expect(&b, TOKEN2, "spring20", "summer", created("spring20"), 1).await;

    let (status, body) = gw.create(&create("SPRING20", "spring", &["loop"])).await;
    assert_eq!(status, 201, "{body}");

    let job = |targets: &[&str]| {
        json!({
            "campaign": "summer",
            "targets": targets,
            "template": { "discount": { "percent_off": 30 } },
            "codes": ["SUMMER-1", "spring20"]
        })
    };
    let (status, problem) = post_json_job(&gw, &job(&["loop2", "loop"])).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["type"], "urn:promo-gateway:problem:invalid-promo-code",
        "{problem}"
    );
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0]["field"], "codes[1]", "{problem}");
    let rule = errors[0]["rule"].as_str().unwrap();
    assert!(
        rule.starts_with("code: `SPRING20` of campaign `spring` is held at loop;"),
        "{problem}"
    );
    // No job was kept, and the ledger holds spring's code alone.
    let (status, _) = gw.get("/v1/sync-jobs/1").await;
    assert_eq!(status, 404);
    assert_eq!(
        ledger(&gw).await,
        [("SPRING20".into(), "spring".into(), json!({ "loop": "created" }))]
    );

    // To loop2 alone, the job is accepted and delivers both codes there.
    let (status, body) = post_json_job(&gw, &job(&["loop2"])).await;
    assert_eq!(status, 202, "{body}");
    let done = wait_done(&gw, body["id"].as_i64().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        done["targets_progress"]["loop2"]["counts"],
        json!({ "created": 2 }),
        "{done}"
    );
    assert_eq!(
        ledger(&gw).await,
        [
            ("SPRING20".into(), "spring".into(), json!({ "loop": "created" })),
            ("SUMMER-1".into(), "summer".into(), json!({ "loop2": "created" })),
            ("spring20".into(), "summer".into(), json!({ "loop2": "created" })),
        ]
    );

    // Mirroring summer to loop now would put its spring20 beside spring's SPRING20: refused.
    let (status, problem) = post_json_job(&gw, &json!({ "mirror": { "campaign": "summer", "to": ["loop"] } })).await;
    assert_eq!(status, 422, "{problem}");
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{problem}");
    assert!(
        errors[0]["rule"]
            .as_str()
            .unwrap()
            .contains("`SPRING20` of campaign `spring` is held at loop"),
        "{problem}"
    );
    assert_eq!(common::received(&a).await, 1);
    assert_eq!(common::received(&b).await, 2);
}

/// A job's failed delivery whose code another campaign has since delivered at that upstream is
/// not sent again by a retry, and its result says why instead of keeping the old error.
#[tokio::test]
async fn a_retry_passes_over_a_code_another_campaign_took_since_and_says_why() {
    let (a, _b, gw) = gateway().await;
    // summer's SUMMER-X fails on loop (a 500 is not retried); SUMMER-Y fails too and is resent.
    expect(&a, TOKEN, "SUMMER-X", "summer", ResponseTemplate::new(500), 1).await;
    common::loop_create(TOKEN, loop_body("SUMMER-Y", "summer"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&a)
        .await;
    expect(&a, TOKEN, "SUMMER-Y", "summer", created("SUMMER-Y"), 1).await;
    // Meanwhile spring creates summer-x, which summer's failed delivery does not hold.
    expect(&a, TOKEN, "summer-x", "spring", created("summer-x"), 1).await;

    let (status, body) = post_json_job(
        &gw,
        &json!({
            "campaign": "summer",
            "targets": ["loop"],
            "template": { "discount": { "percent_off": 30 } },
            "codes": ["SUMMER-X", "SUMMER-Y"]
        }),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let done = wait_done(&gw, id, Duration::from_secs(10)).await;
    assert_eq!(
        done["targets_progress"]["loop"]["counts"],
        json!({ "failed": 2 }),
        "{done}"
    );
    let (status, body) = gw.create(&create("summer-x", "spring", &["loop"])).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = gw.post(&format!("/v1/sync-jobs/{id}/retry"), String::new()).await;
    assert_eq!(status, 202, "{body}");
    let done = wait_done(&gw, id, Duration::from_secs(10)).await;
    assert_eq!(
        done["targets_progress"]["loop"]["counts"],
        json!({ "created": 1, "failed": 1 }),
        "{done}"
    );
    let (status, page) = gw.get(&format!("/v1/sync-jobs/{id}/results?status=failed")).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap_or_else(|| panic!("{page}"));
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["code"], "SUMMER-X", "{page}");
    assert_eq!(items[0]["attempts"], 1, "not sent again: {page}");
    assert_eq!(items[0]["error"]["kind"], "code_conflict", "{page}");
    let message = items[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`summer-x` of campaign `spring` has reached loop"),
        "{page}"
    );
}
