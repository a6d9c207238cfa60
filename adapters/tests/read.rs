//! Golden tests of the read operation: each vendor's get-one and list requests pinned against
//! shared/vendor-docs/lifecycle/ (method, path, query, headers, no body), its paging (a next
//! page, a last page, an empty page, a page or token repeated), the reverse reading of the
//! documents' own example objects, and the comparison of a vendor's copy with what the golden
//! code translates to, in the vendor's terms.

use promo_adapters::adapter::translate;
use promo_adapters::read::{
    differences, unreadable_fields, Cursor, ListPlan, Liveness, Page, ReadOutcome, ReadPlan, ReadTarget, Unlisted,
    VendorCode,
};
use promo_adapters::vendors::for_kind;
use promo_adapters::{OnUnsupported, VendorKind, VendorRequest, VendorResponse};
use serde_json::{json, Value};

mod fixtures;

use fixtures::{campaign, full_request, parse, NETWORK_ID};

const SPACEBRING_ID: &str = "5b0e7d42-91c3-4f6a-a1d8-0c2f3e9b7a11";
const COUPON_REF: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";

fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get(method: &'static str, path: &str, headers: &[(&str, &str)]) -> VendorRequest {
    VendorRequest {
        method,
        path: path.to_owned(),
        headers: pairs(headers),
        body: None,
    }
}

fn plan_read(kind: VendorKind, vendor_id: Option<&str>) -> ReadPlan {
    let campaign = campaign();
    let target = ReadTarget {
        code: "SPRING-20",
        vendor_id,
    };
    for_kind(kind)
        .plan_read(&target, &fixtures::context(kind, &campaign))
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn plan_list(kind: VendorKind, after: Option<&Cursor>) -> ListPlan {
    let campaign = campaign();
    for_kind(kind)
        .plan_list(after, &fixtures::context(kind, &campaign))
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn page_request(kind: VendorKind, after: Option<&Cursor>) -> VendorRequest {
    match plan_list(kind, after) {
        ListPlan::Page(r) => r,
        other => panic!("{kind}: expected a page, got {other:?}"),
    }
}

fn response(status: u16, body: &Value) -> Vec<u8> {
    let _ = status;
    body.to_string().into_bytes()
}

fn read_one(kind: VendorKind, status: u16, body: &Value) -> ReadOutcome<VendorCode> {
    let bytes = response(status, body);
    for_kind(kind).parse_read(&VendorResponse {
        status,
        retry_after: None,
        body: &bytes,
    })
}

fn found(kind: VendorKind, body: &Value) -> VendorCode {
    match read_one(kind, 200, body) {
        ReadOutcome::Found(code) => code,
        other => panic!("{kind}: expected the code, got {other:?}"),
    }
}

fn page(kind: VendorKind, after: Option<&Cursor>, body: &Value) -> Page {
    let bytes = response(200, body);
    match for_kind(kind).parse_list(
        after,
        &VendorResponse {
            status: 200,
            retry_after: None,
            body: &bytes,
        },
    ) {
        ReadOutcome::Found(page) => page,
        other => panic!("{kind}: expected a page, got {other:?}"),
    }
}

#[test]
fn each_vendor_reads_one_code_with_its_documented_call() {
    let accept = [("Accept", "application/json")];
    assert_eq!(
        plan_read(VendorKind::Spacebring, Some(SPACEBRING_ID)),
        ReadPlan::Get(get(
            "GET",
            &format!("/discounts/promocodes/v1/{SPACEBRING_ID}"),
            &[("spacebring-network-id", NETWORK_ID)]
        ))
    );
    // Without the uuid, its coupon's list is the only other key.
    assert_eq!(plan_read(VendorKind::Spacebring, None), ReadPlan::Scan);
    assert_eq!(
        plan_read(VendorKind::Partnero, Some("SPRING-20")),
        ReadPlan::Get(get("GET", "/v1/promotion-codes/SPRING-20", &accept))
    );
    assert_eq!(plan_read(VendorKind::Moltin, Some("SPRING-20")), ReadPlan::Scan);
    assert_eq!(
        plan_read(VendorKind::LimioV2, Some("promo_code_v2-SPRING-20")),
        ReadPlan::Get(get(
            "GET",
            "/objects/limio/promo_codes_v2/promo_code_v2-SPRING-20",
            &accept
        ))
    );
    assert!(matches!(
        plan_read(VendorKind::LimioV2, None),
        ReadPlan::Unreadable { .. }
    ));
    let ReadPlan::Unreadable { reason } = plan_read(VendorKind::LimioV3, Some("promo_code_v3-SPRING-20")) else {
        panic!("Limio v3 documents no read");
    };
    assert!(reason.contains("§6"), "{reason}");
    assert_eq!(plan_read(VendorKind::Loop, Some("promo_9Qf2LmX4")), ReadPlan::Scan);
    // A damaged id never reaches a path.
    let campaign = campaign();
    let bad = ReadTarget {
        code: "SPRING-20",
        vendor_id: Some("promo_code_v3-SPRING-20"),
    };
    assert!(for_kind(VendorKind::LimioV2)
        .plan_read(&bad, &fixtures::context(VendorKind::LimioV2, &campaign))
        .is_err());
}

#[test]
fn each_vendor_lists_with_its_documented_paging() {
    let accept = [("Accept", "application/json")];
    let network = [("spacebring-network-id", NETWORK_ID)];
    assert_eq!(
        page_request(VendorKind::Spacebring, None),
        get(
            "GET",
            &format!("/discounts/promocodes/v1?couponRef={COUPON_REF}"),
            &network
        )
    );
    assert_eq!(
        page_request(VendorKind::Spacebring, Some(&Cursor("b64:Zm9v/YmFy=".into()))),
        get(
            "GET",
            &format!("/discounts/promocodes/v1?couponRef={COUPON_REF}&nextPageToken=b64%3AZm9v%2FYmFy%3D"),
            &network
        )
    );
    assert_eq!(
        page_request(VendorKind::Partnero, None),
        get("GET", "/v1/promotion-codes?limit=100&page=1", &accept)
    );
    assert_eq!(
        page_request(VendorKind::Moltin, None),
        get(
            "GET",
            &format!("/v2/promotions/{PROMOTION}/codes?page[limit]=100&page[offset]=0"),
            &accept
        )
    );
    assert_eq!(
        page_request(VendorKind::Loop, None),
        get("GET", "/v1/admin/promos", &[])
    );
    // Limio's list answer names neither its array nor its cursor (§2): not relied on.
    assert!(matches!(
        plan_list(VendorKind::LimioV2, None),
        ListPlan::Unreadable { .. }
    ));
    assert!(matches!(
        plan_list(VendorKind::LimioV3, None),
        ListPlan::Unreadable { .. }
    ));
    assert_eq!(for_kind(VendorKind::Loop).unlisted(), {
        let Unlisted::NotActive(why) = for_kind(VendorKind::Loop).unlisted() else {
            panic!("Loop lists only active codes")
        };
        assert!(why.contains("not listed as active"), "{why}");
        Unlisted::NotActive(why)
    });
    assert_eq!(for_kind(VendorKind::Moltin).unlisted(), Unlisted::Absent);
}

/// lifecycle/spacebring.md §1's example, and the same archived.
#[test]
fn spacebring_reads_its_promocode_object() {
    let mut example = json!({ "promocode": {
        "id": SPACEBRING_ID, "code": "AUTUMNDESK", "couponRef": COUPON_REF,
        "createDate": "2025-09-01T08:30:00Z", "archiveDate": null,
        "expiration": { "enabled": true, "date": "2025-11-30T23:59:59Z" },
        "limitByFirstPurchase": false,
        "limitedRedemption": { "enabled": true, "value": 50, "usage": 7 }
    } });
    let code = found(VendorKind::Spacebring, &example);
    assert_eq!(
        (
            code.code.as_str(),
            code.vendor_id.as_deref(),
            code.liveness,
            code.redemptions
        ),
        ("AUTUMNDESK", Some(SPACEBRING_ID), Liveness::Active, Some(7))
    );
    example["promocode"]["archiveDate"] = json!("2025-10-02T12:00:00Z");
    assert_eq!(found(VendorKind::Spacebring, &example).liveness, Liveness::Revoked);
    // Not the documented shape: neither found nor absent.
    assert!(matches!(
        read_one(VendorKind::Spacebring, 200, &json!({ "code": "X" })),
        ReadOutcome::Failed { .. }
    ));
    assert!(matches!(
        read_one(
            VendorKind::Spacebring,
            404,
            &json!({ "message": "no", "type": "not_found" })
        ),
        ReadOutcome::NotFound { .. }
    ));
    assert!(matches!(
        read_one(VendorKind::Spacebring, 503, &json!({})),
        ReadOutcome::Failed { retryable: true, .. }
    ));
}

/// lifecycle/partnero.md §1's example; a parent coupon switched off; a `status` other than 1.
#[test]
fn partnero_reads_its_promotion_code_object() {
    let mut example = json!({ "data": {
        "code": "RIVERSIDE-15", "first_time_order": false,
        "limit_to_specific_partner": true, "coupon_specific_partners": { "id": "prt_4410", "full_name": "Ada Quill" },
        "limit_to_specific_customer": false, "coupon_specific_customers": [],
        "minimum_order_status": false, "minimum_order_value": 0,
        "expiration_date_status": true, "expiration_date_value": "2026-01-31",
        "redemption_times_status": true, "redemption_times_value": 200,
        "metadata": { "gateway_ref": "pg-7c1e" }, "additional_info": [], "times_redeemed": 12,
        "coupon": { "name": "SPRING15", "uuid_code": "CPN8H2KQ", "active": true }
    }, "status": 1 });
    let code = found(VendorKind::Partnero, &example);
    assert_eq!(
        (code.code.as_str(), code.liveness, code.redemptions),
        ("RIVERSIDE-15", Liveness::Active, Some(12))
    );
    assert!(code.warnings.is_empty());
    example["data"]["coupon"]["active"] = json!(false);
    let code = found(VendorKind::Partnero, &example);
    assert_eq!(code.liveness, Liveness::Revoked);
    assert!(code.warnings[0].message.contains("CPN8H2KQ"), "{:?}", code.warnings);
    example["status"] = json!(0);
    assert!(matches!(
        read_one(VendorKind::Partnero, 200, &example),
        ReadOutcome::Failed { .. }
    ));
}

/// lifecycle/limio.md §1's expected shape; `data.status: false` is inactive.
#[test]
fn limio_v2_reads_its_object() {
    let mut example = json!({
        "id": "promo_code_v2-WINTER20", "name": "WINTER20", "status": "active",
        "record_type": "promo_code_v2", "service": "limio",
        "data": { "promoCode": "WINTER20", "status": true, "usage": { "availableQuantity": 500 } }
    });
    let code = found(VendorKind::LimioV2, &example);
    assert_eq!(
        (
            code.code.as_str(),
            code.vendor_id.as_deref(),
            code.liveness,
            code.redemptions
        ),
        ("WINTER20", Some("promo_code_v2-WINTER20"), Liveness::Active, None)
    );
    assert!(code.warnings[0].message.contains("§1"), "{:?}", code.warnings);
    example["data"]["status"] = json!(false);
    assert_eq!(found(VendorKind::LimioV2, &example).liveness, Liveness::Revoked);
}

#[test]
fn partnero_pages_until_links_next_is_null() {
    let item = |code: &str| json!({ "code": code, "times_redeemed": 0 });
    let body = |codes: Vec<Value>, next: Value| json!({ "data": codes, "links": { "next": next }, "status": 1 });
    let first = page(
        VendorKind::Partnero,
        None,
        &body(
            vec![item("A"), item("B")],
            json!("https://api.partnero.com/v1/promotion-codes?page=2"),
        ),
    );
    assert_eq!(first.codes.len(), 2);
    let next = first.next.clone().expect("a next page");
    assert_eq!(
        page_request(VendorKind::Partnero, Some(&next)).path,
        "/v1/promotion-codes?limit=100&page=2"
    );
    assert!(first.warnings[0].message.contains("whole program"));
    // The last page, an empty page, and a page that repeats the one before.
    let last = page(VendorKind::Partnero, Some(&next), &body(vec![item("C")], Value::Null));
    assert_eq!((last.codes.len(), last.next), (1, None));
    let empty = page(VendorKind::Partnero, Some(&next), &body(vec![], json!("…?page=3")));
    assert_eq!((empty.codes.len(), empty.next), (0, None));
    let repeated = page(
        VendorKind::Partnero,
        Some(&next),
        &body(vec![item("A"), item("B")], json!("…?page=3")),
    );
    assert_eq!(repeated.next, None);
    assert!(repeated.warnings.iter().any(|w| w.message.contains("repeats")));
}

#[test]
fn moltin_pages_by_offset_in_either_documented_shape() {
    let records = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| json!({ "code": format!("C{i}"), "uses": 3, "max_uses": 5 }))
            .collect()
    };
    let nested = |codes: Vec<Value>, total: u64| json!({ "data": [ { "data": { "codes": codes } } ], "meta": { "results": { "total": total } } });
    let first = page(VendorKind::Moltin, None, &nested(records(0, 100), 150));
    assert_eq!(first.codes.len(), 100);
    assert_eq!(first.codes[0].redemptions, Some(2), "max_uses − uses");
    let next = first.next.clone().expect("a second page");
    assert!(page_request(VendorKind::Moltin, Some(&next))
        .path
        .ends_with("page[limit]=100&page[offset]=100"));
    // A short page is the last one; so is a full one that reaches the total.
    let last = page(VendorKind::Moltin, Some(&next), &nested(records(100, 50), 150));
    assert_eq!((last.codes.len(), last.next), (50, None));
    let at_total = page(VendorKind::Moltin, None, &nested(records(0, 100), 100));
    assert_eq!(at_total.next, None);
    // The older flat shape; an empty list.
    let flat = page(VendorKind::Moltin, None, &json!({ "data": [ { "code": "OLD" } ] }));
    assert_eq!(flat.codes[0].code, "OLD");
    assert!(flat.codes[0].warnings[0].message.contains("2023-04-27"));
    assert_eq!(page(VendorKind::Moltin, None, &json!({ "data": [] })).codes.len(), 0);
    // A server that ignores paging answers the first page again: the walk stops there.
    let again = page(VendorKind::Moltin, Some(&next), &nested(records(0, 100), 150));
    assert_eq!((again.codes.len(), again.next.is_none()), (0, true));
    assert!(again.warnings[0].message.contains("ignores paging"));
}

#[test]
fn spacebring_follows_a_page_token_if_one_appears_and_stops_on_a_repeat() {
    let one = json!({ "id": SPACEBRING_ID, "code": "A" });
    let first = page(
        VendorKind::Spacebring,
        None,
        &json!({ "promocodes": [one], "nextPageToken": "t1" }),
    );
    assert_eq!(first.next, Some(Cursor("t1".into())));
    let none = page(VendorKind::Spacebring, None, &json!({ "promocodes": [] }));
    assert_eq!(none.next, None);
    let repeat = page(
        VendorKind::Spacebring,
        Some(&Cursor("t1".into())),
        &json!({ "promocodes": [], "nextPageToken": "t1" }),
    );
    assert_eq!(repeat.next, None);
    assert!(repeat.warnings.iter().any(|w| w.message.contains("twice")));
}

#[test]
fn loop_lists_once_and_warns_of_a_round_count() {
    let promo = |i: usize, active: bool| {
        json!({ "id": format!("promo_{i}"), "code": format!("L{i}"), "active": active,
                "percent_off": 15, "amount_off": null, "currency": null, "expires_at": null,
                "max_redemptions": null, "times_redeemed": 4, "created_at": "2025-10-01T09:12:44Z" })
    };
    let small = page(
        VendorKind::Loop,
        None,
        &json!({ "promos": [promo(1, true), promo(2, false)] }),
    );
    assert_eq!(small.next, None);
    assert_eq!(
        (
            small.codes[0].liveness,
            small.codes[1].liveness,
            small.codes[0].redemptions
        ),
        (Liveness::Active, Liveness::Revoked, Some(4))
    );
    assert!(small.warnings.is_empty());
    let round: Vec<Value> = (0..100).map(|i| promo(i, true)).collect();
    let cut = page(VendorKind::Loop, None, &json!({ "promos": round }));
    assert!(cut.warnings[0].message.contains("exactly 100"));
    // A listed promo is matched by the id the create returned.
    let target = ReadTarget {
        code: "L1",
        vendor_id: Some("promo_1"),
    };
    assert!(for_kind(VendorKind::Loop).is_read_target(&target, &small.codes[0]));
    assert!(!for_kind(VendorKind::Loop).is_read_target(&target, &small.codes[1]));
}

/// The golden code's create body, for `kind`.
fn sent(kind: VendorKind) -> Value {
    let request = parse(&full_request());
    let campaign = campaign();
    translate(
        for_kind(kind).as_ref(),
        &request.promo,
        OnUnsupported::SkipField,
        None,
        &fixtures::context(kind, &campaign),
    )
    .unwrap_or_else(|e| panic!("{kind}: {e}"))
    .request
    .body
    .unwrap()
}

#[test]
fn a_vendors_copy_is_compared_in_its_own_terms_and_named_by_the_unified_field() {
    // Spacebring: what create sent, read back as §1 gives it, is in sync; a limit changed in
    // its dashboard and an expiry switched off are named.
    let body = sent(VendorKind::Spacebring);
    let mut copy = body["promocode"].clone();
    copy["expiration"]["date"] = json!("2026-04-01T12:00:00.000Z");
    let adapter = for_kind(VendorKind::Spacebring);
    assert_eq!(differences(adapter.as_ref(), &body, &copy), vec![]);
    copy["limitedRedemption"]["value"] = json!(50);
    copy["expiration"] = json!({ "enabled": false });
    let found = differences(adapter.as_ref(), &body, &copy);
    let named: Vec<(&str, Value, Value)> = found
        .iter()
        .map(|d| (d.field, d.ledger.clone(), d.vendor.clone()))
        .collect();
    assert_eq!(
        named,
        vec![
            ("expires_at", json!("2026-04-01T12:00:00Z"), Value::Null),
            ("max_redemptions", json!(500), json!(50)),
        ]
    );

    // Partnero: its read form of empty maps (`[]`) and of a switched-off minimum (`0`) is none.
    let body = sent(VendorKind::Partnero);
    let mut copy = body.clone();
    copy["coupon_specific_customers"] = json!({ "id": "cus_123", "customer_full_name": "Ada Lovelace" });
    let adapter = for_kind(VendorKind::Partnero);
    assert_eq!(differences(adapter.as_ref(), &body, &copy), vec![]);
    copy["metadata"] = json!([]);
    copy["first_time_order"] = json!(false);
    let fields: Vec<&str> = differences(adapter.as_ref(), &body, &copy)
        .iter()
        .map(|d| d.field)
        .collect();
    assert_eq!(fields, ["first_time_only", "metadata"]);

    // Moltin: the create's `uses` is the record's `max_uses`.
    let adapter = for_kind(VendorKind::Moltin);
    let body = sent(VendorKind::Moltin);
    let record = json!({ "code": "SPRING-20", "uses": 498, "max_uses": 500, "user": "cus_123" });
    assert_eq!(differences(adapter.as_ref(), &body, &record), vec![]);

    // Loop: `valid_until` comes back as `expires_at`, compared as an instant.
    let adapter = for_kind(VendorKind::Loop);
    let body = sent(VendorKind::Loop);
    let mut promo = body.clone();
    promo["expires_at"] = json!("2026-04-01T14:00:00+02:00");
    assert_eq!(differences(adapter.as_ref(), &body, &promo), vec![]);
    promo["percent_off"] = json!(25);
    let d = differences(adapter.as_ref(), &body, &promo);
    assert_eq!(
        (d[0].field, d[0].ledger.clone(), d[0].vendor.clone()),
        ("discount.percent_off", json!(20), json!(25))
    );
}

#[test]
fn fields_a_vendor_carries_but_cannot_give_back_are_named_once() {
    let request = parse(&full_request());
    for kind in VendorKind::ALL {
        let warning = unreadable_fields(for_kind(kind).as_ref(), &request.promo);
        match kind {
            // Limio v2 keeps `description`... and gives it back; every carried field is read.
            VendorKind::Spacebring
            | VendorKind::Partnero
            | VendorKind::Moltin
            | VendorKind::Loop
            | VendorKind::LimioV2 => {
                assert_eq!(warning, None, "{kind}")
            }
            // v3 reads nothing back, so everything it carries is unread.
            VendorKind::LimioV3 => {
                let w = warning.expect("v3 reads nothing");
                assert!(
                    w.field.contains("expires_at") && w.field.contains("max_redemptions"),
                    "{w:?}"
                );
            }
        }
    }
}
