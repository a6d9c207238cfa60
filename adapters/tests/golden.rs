//! Golden tests: one fully specified unified code, translated for all six vendors with the
//! repository's own campaign mapping (mappings/example.toml), and every vendor's request pinned
//! field by field against its document in shared/vendor-docs/. A change to any body, path,
//! header or warning has to change this file too.

use promo_adapters::adapter::translate;
use promo_adapters::mapping::Campaign;
use promo_adapters::vendors::for_kind;
use promo_adapters::{BuildError, CreateRequest, OnUnsupported, Translation, VendorKind};
use serde_json::{json, Value};

mod fixtures;

use fixtures::{campaign, full_request, parse, upstream_name, NETWORK_ID};

fn translate_for(kind: VendorKind, request: &CreateRequest, campaign: &Campaign) -> Result<Translation, BuildError> {
    let ctx = fixtures::context(kind, campaign);
    translate(
        for_kind(kind).as_ref(),
        &request.promo,
        request.on_unsupported,
        request.passthrough.get(upstream_name(kind)),
        &ctx,
    )
}

fn golden(kind: VendorKind) -> Translation {
    let request = parse(&full_request());
    assert_eq!(request.on_unsupported, OnUnsupported::SkipField);
    translate_for(kind, &request, &campaign()).unwrap_or_else(|e| panic!("{kind} builds: {e}"))
}

fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn not_sent(vendor: &str) -> String {
    format!("not sent: {vendor} has no such field")
}

/// `t` is a POST to `path` with exactly `headers` and `body`.
fn assert_request(t: &Translation, path: &str, headers: &[(&str, &str)], body: Value) {
    assert_eq!(t.request.method, "POST");
    assert_eq!(t.request.path, path);
    assert_eq!(t.request.headers, pairs(headers));
    assert_eq!(t.request.body, Some(body));
}

/// `t` warns, in this order, that each field of `dropped` (`a, b, ...`) is not sent to `vendor`,
/// then `others`.
fn assert_warnings(t: &Translation, vendor: &str, dropped: &str, others: &[(&str, &str)]) {
    let skipped = not_sent(vendor);
    let mut want: Vec<(&str, &str)> = dropped.split(", ").map(|f| (f, skipped.as_str())).collect();
    want.extend_from_slice(others);
    let got: Vec<(&str, &str)> = t
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(got, want);
}

const START_DATE_WARNING: &str = "sent as the date 2026-03-02 (the vendor takes a date, counted from its first instant in UTC); the code starts after 2026-03-01T09:00:00+00:00, never before";
const EXPIRY_DATE_WARNING: &str = "sent as the date 2026-03-31 (the vendor takes a date, read as valid through the end of that day in UTC); the code ends before 2026-04-01T12:00:00+00:00, never after";

#[test]
fn spacebring() {
    let t = golden(VendorKind::Spacebring);
    // spacebring-create-promocode.md, requestBody createPromocode: promocode.{code (string,
    // minLength 1), couponRef (uuid), expiration {enabled (required), date (date-time, required
    // when enabled)}, limitByFirstPurchase (boolean), limitedRedemption {enabled, value} (both
    // required)}; all five promocode keys are required.
    assert_request(
        &t,
        "/discounts/promocodes/v1",
        &[
            ("Content-Type", "application/json"),
            ("spacebring-network-id", NETWORK_ID),
        ],
        json!({
            "promocode": {
                "code": "SPRING-20",
                "couponRef": "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f",
                "expiration": { "enabled": true, "date": "2026-04-01T12:00:00Z" },
                "limitByFirstPurchase": true,
                "limitedRedemption": { "enabled": true, "value": 500 }
            }
        }),
    );
    assert_warnings(
        &t,
        "Spacebring",
        "active, starts_at, minimum_order, customer, partner, description, metadata",
        &[],
    );
}

#[test]
fn partnero() {
    let t = golden(VendorKind::Partnero);
    // partnero-create-promotion-code.md, Request Body table: coupon_uuid (required), code,
    // first_time_order, limit_to_specific_partner + coupon_specific_partners {id, full_name},
    // limit_to_specific_customer + coupon_specific_customers {id, customer_full_name},
    // minimum_order_status + minimum_order_value (integer), expiration_date_status +
    // expiration_date_value (date), redemption_times_status + redemption_times_value (integer),
    // metadata (object). limit_to_specific_subscriber is not a unified field and is not sent.
    assert_request(
        &t,
        "/v1/promotion-codes",
        &[("Accept", "application/json"), ("Content-Type", "application/json")],
        json!({
            "coupon_uuid": "coupon_123",
            "code": "SPRING-20",
            "first_time_order": true,
            "limit_to_specific_partner": true,
            "coupon_specific_partners": { "id": "p_9", "full_name": "Acme Affiliates" },
            "limit_to_specific_customer": true,
            "coupon_specific_customers": { "id": "cus_123", "customer_full_name": "Ada Lovelace" },
            "minimum_order_status": true,
            "minimum_order_value": 26,
            "expiration_date_status": true,
            "expiration_date_value": "2026-03-31",
            "redemption_times_status": true,
            "redemption_times_value": 500,
            "metadata": { "source": "crm" }
        }),
    );
    assert_warnings(
        &t,
        "Partnero",
        "active, starts_at, description",
        &[
            (
                "minimum_order",
                "sent as 26 (rounded up from 25.50 USD): Partnero takes whole units",
            ),
            ("expires_at", EXPIRY_DATE_WARNING),
        ],
    );
}

#[test]
fn moltin() {
    let t = golden(VendorKind::Moltin);
    // moltin-create-promotion-codes.md: POST /v2/promotions/:id/codes, id = the promotion.
    // Body parameters: type = `promotion_codes` (required), codes[] (required) of
    // {code (required), uses (integer), user (string)}, wrapped in `data` as the cURL example shows.
    assert_request(
        &t,
        "/v2/promotions/7005b249-300b-4cf6-964e-e663278af218/codes",
        &[("Content-Type", "application/json")],
        json!({
            "data": {
                "type": "promotion_codes",
                "codes": [ { "code": "SPRING-20", "uses": 500, "user": "cus_123" } ]
            }
        }),
    );
    assert_warnings(
        &t,
        "Moltin",
        "active, starts_at, expires_at, first_time_only, minimum_order, partner, description, metadata",
        &[],
    );
}

#[test]
fn limio_v2() {
    let t = golden(VendorKind::LimioV2);
    // limio-promo-codes-v2-v3.md: paths./objects/limio/promo_codes_v2 (relative to the
    // https://{tenant}/api server).
    // UpdatePromoCodeObjects: name, id (record type + name: promo_code_v2-<name>), data.
    // data is PromoCodeSelectedItems: applicationLevel "selectedItems" + referencedOfferLabel,
    // with PromoCodeData: promoCode, status (boolean), description, promoStartDate and
    // promoExpiryDate (format date), productDetails.product.path / ratePlan.path,
    // usage.availableQuantity, discount "Discount Type Percentage" {discountType,
    // percentageDiscount}. durationLength/durationType are absent: the code names no duration.
    assert_request(
        &t,
        "/objects/limio/promo_codes_v2",
        &[("Content-Type", "application/json")],
        json!({
            "name": "SPRING-20",
            "id": "promo_code_v2-SPRING-20",
            "data": {
                "applicationLevel": "selectedItems",
                "referencedOfferLabel": "spring-offer",
                "promoCode": "SPRING-20",
                "status": false,
                "description": "Spring sale",
                "promoStartDate": "2026-03-02",
                "promoExpiryDate": "2026-03-31",
                "productDetails": {
                    "product": { "path": "/products/digital-subscription" },
                    "ratePlan": { "path": "/products/digital-subscription/rate-plans/monthly-discount" }
                },
                "usage": { "availableQuantity": 500 },
                "discount": { "discountType": "DiscountPercentage", "percentageDiscount": 20 }
            }
        }),
    );
    assert_warnings(
        &t,
        "Limio v2",
        "first_time_only, minimum_order, customer, partner, metadata",
        &[("starts_at", START_DATE_WARNING), ("expires_at", EXPIRY_DATE_WARNING)],
    );
}

#[test]
fn limio_v3() {
    let t = golden(VendorKind::LimioV3);
    // limio-promo-codes-v2-v3.md: paths./objects/limio/promo_codes_v3.
    // CreatePromoCodeV3Request: name, id (promo_code_v3-<name>), data (PromoCodeV3Data):
    // promoCode, status, description, promoStartDate / promoExpiryDate (YYYY-MM-DD),
    // usage.availableQuantity (integer), attachedDiscount {id, path, name}. No inline discount:
    // the catalog discount grants it.
    assert_request(
        &t,
        "/objects/limio/promo_codes_v3",
        &[("Content-Type", "application/json")],
        json!({
            "name": "SPRING-20",
            "id": "promo_code_v3-SPRING-20",
            "data": {
                "promoCode": "SPRING-20",
                "status": false,
                "description": "Spring sale",
                "promoStartDate": "2026-03-02",
                "promoExpiryDate": "2026-03-31",
                "usage": { "availableQuantity": 500 },
                "attachedDiscount": { "id": "d_8f2e", "path": "/offers/discounts/spring-20", "name": "Spring 20%" }
            }
        }),
    );
    assert_warnings(
        &t,
        "Limio v3",
        "first_time_only, minimum_order, customer, partner, metadata",
        &[("starts_at", START_DATE_WARNING), ("expires_at", EXPIRY_DATE_WARNING)],
    );
}

#[test]
fn r#loop() {
    let t = golden(VendorKind::Loop);
    // loop-create-promo.md, request body: code (1..50 chars, required), percent_off (number,
    // 1..100), amount_off (integer, absent here), valid_until (date-time), max_redemptions
    // (integer > 0).
    assert_request(
        &t,
        "/v1/admin/promos",
        &[("Content-Type", "application/json")],
        json!({
            "code": "SPRING-20",
            "percent_off": 20,
            "valid_until": "2026-04-01T12:00:00Z",
            "max_redemptions": 500
        }),
    );
    assert_warnings(
        &t,
        "Loop",
        "active, starts_at, first_time_only, minimum_order, customer, partner, description, metadata",
        &[],
    );
}

/// The golden code, sent with the default policy, is refused wherever a restriction would be
/// dropped, naming every such field: the goldens above only exist because of skip_field.
#[test]
fn without_skip_field_each_vendor_names_every_restriction_it_cannot_carry() {
    let mut body = full_request();
    body.as_object_mut().unwrap().remove("on_unsupported");
    let request = parse(&body);
    let campaign = campaign();
    let refused = |kind| match translate_for(kind, &request, &campaign) {
        Err(BuildError::Unsupported { vendor, field, .. }) => {
            assert_eq!(vendor, kind);
            field
        }
        other => panic!("{kind}: expected unsupported, got {other:?}"),
    };
    assert_eq!(
        refused(VendorKind::Spacebring),
        "active, starts_at, minimum_order, customer, partner"
    );
    assert_eq!(refused(VendorKind::Partnero), "active, starts_at");
    assert_eq!(
        refused(VendorKind::Moltin),
        "active, starts_at, expires_at, first_time_only, minimum_order, partner"
    );
    assert_eq!(
        refused(VendorKind::LimioV2),
        "first_time_only, minimum_order, customer, partner"
    );
    assert_eq!(
        refused(VendorKind::LimioV3),
        "first_time_only, minimum_order, customer, partner"
    );
    assert_eq!(
        refused(VendorKind::Loop),
        "active, starts_at, first_time_only, minimum_order, customer, partner"
    );
}

/// The golden code plus the duration the example's Limio v3 catalog discount declares: Limio v2
/// sends it inline, Limio v3 accepts it as its parent's, and the vendors whose parents declare
/// none refuse rather than create a code of unknown duration.
#[test]
fn a_duration_needs_a_parent_that_declares_it() {
    let mut body = full_request();
    body["duration"] = json!({ "length": 3, "unit": "months" });
    let request = parse(&body);
    let campaign = campaign();

    let v2 = translate_for(VendorKind::LimioV2, &request, &campaign).unwrap();
    assert_eq!(
        v2.request.body.unwrap()["data"]["discount"],
        json!({ "discountType": "DiscountPercentage", "percentageDiscount": 20, "durationLength": 3, "durationType": "Months" })
    );
    let v3 = translate_for(VendorKind::LimioV3, &request, &campaign).unwrap();
    assert_eq!(v3.request.body, golden(VendorKind::LimioV3).request.body);
    let loop_ = translate_for(VendorKind::Loop, &request, &campaign).unwrap();
    assert!(
        loop_
            .warnings
            .iter()
            .any(|w| w.field == "duration" && w.message == not_sent("Loop")),
        "{:?}",
        loop_.warnings
    );

    for kind in [VendorKind::Spacebring, VendorKind::Partnero, VendorKind::Moltin] {
        match translate_for(kind, &request, &campaign) {
            Err(BuildError::Mapping(m)) => {
                assert!(m.starts_with("duration: the request asks for 3 months"), "{kind}: {m}");
                assert!(
                    m.contains(&format!("[upstreams.{}]", upstream_name(kind))),
                    "{kind}: {m}"
                );
            }
            other => panic!("{kind}: expected a mapping error, got {other:?}"),
        }
    }
}
