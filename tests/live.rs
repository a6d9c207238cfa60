//! `GET /v1/promo-codes/{code}/live` through the real router, against wiremock upstreams that
//! check the exact read calls of shared/vendor-docs/lifecycle/: Spacebring's get by uuid,
//! Partnero's get by code, Moltin's list walked by `page[offset]`, Loop's one list. Each server
//! is strict: a call not mounted fails the test, so "no other call" is asserted too.

mod common;

use common::result;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const COUPON: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";
const NETWORK: &str = "0c9e6f1a-2b3d-4e5f-8a7b-6c5d4e3f2a1b";
const SB_ID: &str = "9b2f4c1e-7a6d-4e8f-b3c2-1d0e9f8a7b6c";
const LOOP_ID: &str = "promo_live_1";

const ENV: &[(&str, &str)] = &[
    ("SPACEBRING_TOKEN", "sb-token"),
    ("MOLTIN_TOKEN", "moltin-token"),
    ("PARTNERO_TOKEN", "partnero-token"),
    ("LOOP_TOKEN", "loop-token"),
];

struct Vendors {
    sb: MockServer,
    moltin: MockServer,
    partnero: MockServer,
    lp: MockServer,
}

async fn setup() -> (Vendors, common::Gateway) {
    let v = Vendors {
        sb: common::strict_server().await,
        moltin: common::strict_server().await,
        partnero: common::strict_server().await,
        lp: common::strict_server().await,
    };
    let config = [
        common::upstream(
            "spacebring",
            "spacebring",
            &v.sb.uri(),
            &format!("network_id = \"{NETWORK}\""),
        ),
        common::upstream("moltin", "moltin", &v.moltin.uri(), ""),
        common::upstream("partnero", "partnero", &v.partnero.uri(), ""),
        common::upstream("loop", "loop", &v.lp.uri(), ""),
    ]
    .join("\n");
    let mapping = format!(
        "[upstreams.spacebring]\ncoupon_ref = \"{COUPON}\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.partnero]\ncoupon_uuid = \"coupon_123\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.loop]\n"
    );
    let gw = common::start(&config, &[("spring", mapping.as_str())], ENV).await;
    (v, gw)
}

/// Creates `name` (20 % off, at most 50 uses) on the four vendors, each answered as documented.
async fn created(v: &Vendors, gw: &common::Gateway, name: &str) {
    let once = |m: wiremock::MockBuilder, r: ResponseTemplate| m.respond_with(r).up_to_n_times(1);
    once(
        common::spacebring_endpoint(),
        common::spacebring_created(SB_ID, name, COUPON, NETWORK),
    )
    .mount(&v.sb)
    .await;
    once(common::moltin_endpoint(PROMOTION), common::moltin_created(PROMOTION))
        .mount(&v.moltin)
        .await;
    once(common::partnero_endpoint(), common::partnero_created(name))
        .mount(&v.partnero)
        .await;
    once(common::loop_endpoint(), common::loop_created(LOOP_ID, name))
        .mount(&v.lp)
        .await;
    let body = json!({ "code": name, "campaign": "spring", "discount": { "percent_off": 20 }, "max_redemptions": 50 });
    let (status, body) = gw.create(&body).await;
    assert_eq!(status, 201, "{body}");
}

fn no_body(r: &Request) -> bool {
    r.body.is_empty() && !r.headers.contains_key("content-type")
}

fn moltin_record(code: &str, left: u64) -> Value {
    json!({ "code": code, "uses": left, "max_uses": 50, "user": "", "created_by": "ops@example.com",
            "meta": { "timestamps": { "created_at": "2026-03-01T10:00:00.000Z" } } })
}

fn moltin_page(codes: Vec<Value>, offset: u64, total: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "data": [ { "data": { "codes": codes } } ],
        "links": { "next": null },
        "meta": { "page": { "limit": 100, "offset": offset }, "results": { "total": total } }
    }))
}

#[tokio::test]
async fn a_live_read_makes_each_documented_read_and_reports_each_vendors_copy() {
    let (v, gw) = setup().await;
    created(&v, &gw, "LIVE-1").await;

    // lifecycle/spacebring.md §1: GET by uuid, no body, the network header. Its copy's cap was
    // changed in the dashboard (50 → 40) and it was used 3 times.
    Mock::given(method("GET"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}")))
        .and(header("Authorization", "Bearer sb-token"))
        .and(header("spacebring-network-id", NETWORK))
        .and(no_body)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "promocode": {
            "id": SB_ID, "code": "LIVE-1", "couponRef": COUPON, "archiveDate": null,
            "expiration": { "enabled": false }, "limitByFirstPurchase": false,
            "limitedRedemption": { "enabled": true, "value": 40, "usage": 3 }
        } })))
        .expect(1)
        .mount(&v.sb)
        .await;
    // lifecycle/partnero.md §1: GET by the code word; it was deleted in the dashboard.
    Mock::given(method("GET"))
        .and(path("/v1/promotion-codes/LIVE-1"))
        .and(header("Authorization", "Bearer partnero-token"))
        .and(header("Accept", "application/json"))
        .and(no_body)
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not found" })))
        .expect(1)
        .mount(&v.partnero)
        .await;
    // lifecycle/moltin.md §2: no get-one; the promotion's codes, 100 a page, the code on the
    // second page.
    let others: Vec<Value> = (0..100).map(|i| moltin_record(&format!("OTHER-{i}"), 50)).collect();
    for (offset, codes) in [(0, others), (100, vec![moltin_record("LIVE-1", 45)])] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/promotions/{PROMOTION}/codes")))
            .and(query_param("page[limit]", "100"))
            .and(query_param("page[offset]", offset.to_string()))
            .and(header("Authorization", "Bearer moltin-token"))
            .and(header("Accept", "application/json"))
            .and(no_body)
            .respond_with(moltin_page(codes, offset, 101))
            .expect(1)
            .mount(&v.moltin)
            .await;
    }
    // lifecycle/loop.md §2: one list of the active codes, which no longer holds it.
    Mock::given(method("GET"))
        .and(path("/v1/admin/promos"))
        .and(header("Authorization", "Bearer loop-token"))
        .and(no_body)
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "promos": [common::loop_promo("promo_other", "OTHER")] })),
        )
        .expect(1)
        .mount(&v.lp)
        .await;

    let (status, live) = gw.get("/v1/promo-codes/LIVE-1/live?campaign=spring").await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(
        (live["code"].as_str(), live["campaign"].as_str()),
        (Some("LIVE-1"), Some("spring"))
    );

    let sb = result(&live, "spacebring");
    assert_eq!(
        (sb["state"].as_str(), sb["ledger"].as_str()),
        (Some("active"), Some("created")),
        "{sb}"
    );
    assert_eq!(
        (
            sb["vendor_id"].as_str(),
            sb["redemptions"].as_u64(),
            sb["attempts"].as_u64()
        ),
        (Some(SB_ID), Some(3), Some(1))
    );
    assert_eq!(
        sb["differs"],
        json!([{ "field": "max_redemptions", "ledger": 50, "vendor": 40 }]),
        "{sb}"
    );

    let pa = result(&live, "partnero");
    assert_eq!(pa["state"], "absent", "{pa}");
    assert!(
        common::warning(pa, "code").contains("Partnero does not know the code"),
        "{pa}"
    );

    let mo = result(&live, "moltin");
    assert_eq!(
        (
            mo["state"].as_str(),
            mo["attempts"].as_u64(),
            mo["redemptions"].as_u64()
        ),
        (Some("active"), Some(2), Some(5)),
        "{mo}"
    );
    assert_eq!(mo["differs"], json!([]), "{mo}");

    let lp = result(&live, "loop");
    assert_eq!(lp["state"], "revoked", "{lp}");
    assert!(common::warning(lp, "code").contains("not listed as active"), "{lp}");

    // The reads are counted as reads, per upstream.
    let metrics = gw.get_raw("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("promo_gateway_upstream_calls_total")
                && l.contains("upstream=\"moltin\"")
                && l.contains("outcome=\"read\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
    // A code the ledger does not hold is not read anywhere.
    let (status, _) = gw.get("/v1/promo-codes/NEVER/live").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_read_is_retried_on_5xx_and_a_failed_one_is_unknown_never_absent() {
    let (v, gw) = setup().await;
    created(&v, &gw, "LIVE-2").await;
    // A 500 before the answer: a read cannot have an effect, so it is sent again (a create
    // would not be).
    Mock::given(method("GET"))
        .and(path("/v1/promotion-codes/LIVE-2"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&v.partnero)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/promotion-codes/LIVE-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": {
            "code": "LIVE-2", "first_time_order": false, "limit_to_specific_partner": false,
            "coupon_specific_partners": [], "limit_to_specific_customer": false, "coupon_specific_customers": [],
            "minimum_order_status": false, "minimum_order_value": 0,
            "expiration_date_status": false, "expiration_date_value": null,
            "redemption_times_status": true, "redemption_times_value": 50,
            "metadata": [], "additional_info": [], "times_redeemed": 2,
            "coupon": { "uuid_code": "coupon_123", "active": true }
        }, "status": 1 })))
        .expect(1)
        .mount(&v.partnero)
        .await;
    // Spacebring keeps failing; Moltin throttles; Loop answers garbage.
    Mock::given(method("GET"))
        .and(path(format!("/discounts/promocodes/v1/{SB_ID}")))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .expect(3)
        .mount(&v.sb)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&v.moltin)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/admin/promos"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>sign in</html>"))
        .expect(1)
        .mount(&v.lp)
        .await;

    let (status, live) = gw.get("/v1/promo-codes/LIVE-2/live").await;
    assert_eq!(status, 200, "{live}");
    let pa = result(&live, "partnero");
    assert_eq!(
        (
            pa["state"].as_str(),
            pa["attempts"].as_u64(),
            pa["redemptions"].as_u64()
        ),
        (Some("active"), Some(2), Some(2)),
        "{pa}"
    );
    assert_eq!(pa["differs"], json!([]), "{pa}");
    for (target, kind) in [
        ("spacebring", "upstream_error"),
        ("moltin", "rate_limited"),
        ("loop", "invalid_response"),
    ] {
        let r = result(&live, target);
        assert_eq!(
            (r["state"].as_str(), r["error"]["kind"].as_str()),
            (Some("unknown"), Some(kind)),
            "{r}"
        );
    }
    assert_eq!(result(&live, "spacebring")["attempts"], 3);
}
