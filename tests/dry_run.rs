//! A dry run of the repository's example campaign to all six upstreams: every target shows the
//! exact request its vendor document requires, credentials never appear, and no upstream (nor
//! the OAuth2 token endpoint) is called.

mod common;

use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../mappings/example.toml");
const NETWORK_ID: &str = "9b2f4c1e-6a3d-4e8f-b7c5-1d2e3f4a5b6c";

/// Recognisable secrets, one per credential variable.
const ENV: &[(&str, &str)] = &[
    ("SPACEBRING_USER", "sb-user-SECRET-1a2b"),
    ("SPACEBRING_PASS", "sb-pass-SECRET-3c4d"),
    ("PARTNERO_TOKEN", "partnero-SECRET-5e6f"),
    ("MOLTIN_TOKEN", "moltin-SECRET-7a8b"),
    ("LIMIO_ID", "limio-id-SECRET-9c0d"),
    ("LIMIO_SECRET", "limio-secret-SECRET-e1f2"),
    ("LOOP_TOKEN", "loop-SECRET-a3b4"),
];

#[tokio::test]
async fn dry_run_of_the_example_campaign_shows_six_documented_requests_and_calls_nothing() {
    // Servers that fail the test (on drop) if they receive anything at all.
    let [spacebring, partnero, moltin, limio_v2, limio_v3, loop_, token] = [
        common::strict_server().await,
        common::strict_server().await,
        common::strict_server().await,
        common::strict_server().await,
        common::strict_server().await,
        common::strict_server().await,
        common::strict_server().await,
    ];
    let limio_auth =
        common::oauth2_client_credentials(&format!("{}/oauth/token", token.uri()), "LIMIO_ID", "LIMIO_SECRET", "");
    let config = [
        common::upstream(
            "spacebring",
            "spacebring",
            &spacebring.uri(),
            &format!(
                "auth = {{ scheme = \"basic\", username_env = \"SPACEBRING_USER\", password_env = \"SPACEBRING_PASS\" }}\nnetwork_id = \"{NETWORK_ID}\""
            ),
        ),
        common::upstream("partnero", "partnero", &partnero.uri(), ""),
        common::upstream("moltin", "moltin", &moltin.uri(), ""),
        common::upstream(
            "limio-v2",
            "limio",
            &format!("{}/api", limio_v2.uri()),
            &format!("version = \"v2\"\n{limio_auth}"),
        ),
        common::upstream(
            "limio-v3",
            "limio",
            &format!("{}/api", limio_v3.uri()),
            &format!("version = \"v3\"\n{limio_auth}"),
        ),
        common::upstream("loop", "loop", &loop_.uri(), ""),
    ]
    .join("\n");
    let gw = common::start(&config, &[("example", EXAMPLE)], ENV).await;

    // 20% (what every parent in the example grants) and a redemption cap, which all six carry:
    // no target has anything to refuse or drop.
    let request = json!({
        "code": "SPRING-20", "campaign": "example", "discount": { "percent_off": 20 }, "max_redemptions": 100
    });
    let response = gw.post_raw("/v1/promo-codes?dry_run=true", request.to_string()).await;
    assert_eq!(response.status, 200);
    let text = response.text;

    let basic = common::basic("sb-user-SECRET-1a2b", "sb-pass-SECRET-3c4d");
    let encoded = basic.strip_prefix("Basic ").unwrap();
    let secrets: Vec<&str> = ENV.iter().map(|(_, v)| *v).chain([encoded, "SECRET"]).collect();
    common::assert_hides(&text, &secrets);

    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], "SPRING-20");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["results"].as_array().unwrap().len(), 6, "{body}");
    let bearer = |extra: &[(&str, &str)]| {
        let mut h = json!({ "Authorization": "Bearer [redacted]", "Content-Type": "application/json" });
        for (k, v) in extra {
            h[*k] = json!(v);
        }
        h
    };
    let expected = [
        (
            "spacebring",
            "spacebring",
            format!("{}/discounts/promocodes/v1", spacebring.uri()),
            json!({
                "Authorization": "Basic [redacted]",
                "Content-Type": "application/json",
                "spacebring-network-id": NETWORK_ID
            }),
            // createPromocode: the five required promocode keys; no expiry, so expiration is
            // disabled and carries no date.
            json!({
                "promocode": {
                    "code": "SPRING-20",
                    "couponRef": "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f",
                    "expiration": { "enabled": false },
                    "limitByFirstPurchase": false,
                    "limitedRedemption": { "enabled": true, "value": 100 }
                }
            }),
        ),
        (
            "partnero",
            "partnero",
            format!("{}/v1/promotion-codes", partnero.uri()),
            bearer(&[("Accept", "application/json")]),
            // Every *_status flag stated, each *_value only where its flag is true.
            json!({
                "coupon_uuid": "coupon_123",
                "code": "SPRING-20",
                "first_time_order": false,
                "limit_to_specific_partner": false,
                "limit_to_specific_customer": false,
                "minimum_order_status": false,
                "expiration_date_status": false,
                "redemption_times_status": true,
                "redemption_times_value": 100
            }),
        ),
        (
            "moltin",
            "moltin",
            format!(
                "{}/v2/promotions/7005b249-300b-4cf6-964e-e663278af218/codes",
                moltin.uri()
            ),
            bearer(&[]),
            json!({ "data": { "type": "promotion_codes", "codes": [ { "code": "SPRING-20", "uses": 100 } ] } }),
        ),
        (
            "limio-v2",
            "limio_v2",
            format!("{}/api/objects/limio/promo_codes_v2", limio_v2.uri()),
            bearer(&[]),
            json!({
                "name": "SPRING-20",
                "id": "promo_code_v2-SPRING-20",
                "data": {
                    "applicationLevel": "selectedItems",
                    "referencedOfferLabel": "spring-offer",
                    "promoCode": "SPRING-20",
                    "status": true,
                    "productDetails": {
                        "product": { "path": "/products/digital-subscription" },
                        "ratePlan": { "path": "/products/digital-subscription/rate-plans/monthly-discount" }
                    },
                    "usage": { "availableQuantity": 100 },
                    "discount": { "discountType": "DiscountPercentage", "percentageDiscount": 20 }
                }
            }),
        ),
        (
            "limio-v3",
            "limio_v3",
            format!("{}/api/objects/limio/promo_codes_v3", limio_v3.uri()),
            bearer(&[]),
            json!({
                "name": "SPRING-20",
                "id": "promo_code_v3-SPRING-20",
                "data": {
                    "promoCode": "SPRING-20",
                    "status": true,
                    "usage": { "availableQuantity": 100 },
                    "attachedDiscount": { "id": "d_8f2e", "path": "/offers/discounts/spring-20", "name": "Spring 20%" }
                }
            }),
        ),
        (
            "loop",
            "loop",
            format!("{}/v1/admin/promos", loop_.uri()),
            bearer(&[]),
            json!({ "code": "SPRING-20", "percent_off": 20, "max_redemptions": 100 }),
        ),
    ];
    for (upstream, vendor, url, headers, request_body) in expected {
        let r = common::result(&body, upstream);
        assert_eq!(r["vendor"], vendor, "{r}");
        assert_eq!(r["status"], "would_send", "{r}");
        assert_eq!(r["attempts"], 0, "{r}");
        assert_eq!(r["warnings"], json!([]), "{r}");
        assert!(r.get("error").is_none(), "{r}");
        assert_eq!(
            r["request"],
            json!({ "method": "POST", "url": url, "headers": headers, "body": request_body }),
            "{upstream}"
        );
    }

    // Health shows which upstreams are configured, never with what, and no token was fetched.
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["upstreams"]["limio-v2"]["token_fetches"], 0, "{health}");
    let health_text = health.to_string();
    assert!(!health_text.contains("SECRET"), "{health_text}");
}

/// A Moltin `promotion_id` of `.` or `..` (or empty) would leave the path it is put into
/// (`/v2/promotions/../codes` goes out as `/v2/codes`) while the dry run showed the unresolved
/// path: such a mapping stops start-up, naming the file and the key.
#[test]
fn a_promotion_id_that_is_a_dot_segment_stops_start_up_naming_the_file_and_key() {
    for id in ["..", ".", ""] {
        let dir = tempfile::tempdir().unwrap();
        let mapping = format!("[upstreams.moltin]\npromotion_id = \"{id}\"\ndiscount = {{ percent_off = 20 }}\n");
        let path = common::write_files(
            dir.path(),
            &common::upstream("moltin", "moltin", "http://127.0.0.1:9", ""),
            &[("spring", &mapping)],
        );
        let e = match promo_gateway::app_from_file(&path, &|_: &str| None) {
            Ok(_) => panic!("the gateway started with promotion_id = {id:?}"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("spring.toml"), "names the file: {e}");
        assert!(e.contains("upstreams.moltin.promotion_id"), "names the key: {e}");
        assert!(e.contains("path segment"), "states the rule: {e}");
    }
}

/// The dry run shows the URL exactly as the call is sent: a promotion id that needs
/// percent-encoding appears encoded in both, byte for byte.
#[tokio::test]
async fn the_dry_run_url_is_the_url_the_vendor_receives() {
    let moltin = common::strict_server().await;
    let promotion = "promo 1/ü?x#y...";
    let mapping = format!("[upstreams.moltin]\npromotion_id = \"{promotion}\"\ndiscount = {{ percent_off = 20 }}\n");
    let gw = common::start(
        &common::upstream("moltin", "moltin", &moltin.uri(), ""),
        &[("spring", &mapping)],
        &[("MOLTIN_TOKEN", "moltin-SECRET-7a8b")],
    )
    .await;
    let encoded = "/v2/promotions/promo%201%2F%C3%BC%3Fx%23y.../codes";
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(encoded))
        .respond_with(common::moltin_created("p_1"))
        .expect(1)
        .mount(&moltin)
        .await;
    let request = json!({ "code": "URL-1", "campaign": "spring", "discount": { "percent_off": 20 } });
    let (status, body) = gw.dry_run(&request).await;
    assert_eq!(status, 200, "{body}");
    let shown = common::result(&body, "moltin")["request"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(shown, format!("{}{encoded}", moltin.uri()), "{body}");
    let (status, body) = gw.create(&request).await;
    assert_eq!(status, 201, "{body}");
    let received = moltin.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    // wiremock rebuilds the URL from the Host header; the path is what went over the wire.
    assert_eq!(received[0].url.path(), encoded);
}
