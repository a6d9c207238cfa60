//! Golden tests of the revoke operation: for the golden code of tests/golden.rs, each vendor's
//! revoke call pinned method, path, headers and body against its document in
//! shared/vendor-docs/lifecycle/, the delete variants and the unsupported ones, and the reading
//! of each documented answer (success, 404, a second revoke, 429, 5xx, garbage).

use std::time::Duration;

use promo_adapters::adapter::RetryAfter;
use promo_adapters::mapping::Campaign;
use promo_adapters::vendors::for_kind;
use promo_adapters::{
    BuildError, CreateRequest, FailureCause, Missing, RevokeAction, RevokeCall, RevokeOutcome, RevokePlan,
    RevokeTarget, VendorKind, VendorResponse,
};
use serde_json::{json, Value};

mod fixtures;

use fixtures::{campaign, full_request, parse, NETWORK_ID};

const SPACEBRING_ID: &str = "5b0e7d42-91c3-4f6a-a1d8-0c2f3e9b7a11";

/// What each vendor's create answer named the golden code (see each adapter's `parse`).
fn vendor_id(kind: VendorKind) -> &'static str {
    match kind {
        VendorKind::Spacebring => SPACEBRING_ID,
        VendorKind::Partnero | VendorKind::Moltin => "SPRING-20",
        VendorKind::LimioV2 => "promo_code_v2-SPRING-20",
        VendorKind::LimioV3 => "promo_code_v3-SPRING-20",
        VendorKind::Loop => "promo_9Qf2LmX4",
    }
}

fn golden_request() -> CreateRequest {
    parse(&full_request())
}

fn plan_with(
    kind: VendorKind,
    request: &CreateRequest,
    id: &str,
    delete: bool,
    campaign: &Campaign,
) -> Result<RevokePlan, BuildError> {
    let target = RevokeTarget {
        code: &request.promo,
        vendor_id: id,
        passthrough: request.passthrough.get(fixtures::upstream_name(kind)),
    };
    for_kind(kind).plan_revoke(&target, delete, &fixtures::context(kind, campaign))
}

fn plan(kind: VendorKind, delete: bool) -> RevokePlan {
    plan_with(kind, &golden_request(), vendor_id(kind), delete, &campaign())
        .unwrap_or_else(|e| panic!("{kind} plans a revoke: {e}"))
}

fn call(kind: VendorKind, delete: bool) -> RevokeCall {
    match plan(kind, delete) {
        RevokePlan::Call(call) => call,
        other => panic!("{kind}: expected a call, got {other:?}"),
    }
}

fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `c` is `method path` with exactly `headers` and `body`, doing `action` to one code.
fn assert_call(
    c: &RevokeCall,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
    action: RevokeAction,
) {
    let r = &c.translation.request;
    assert_eq!((r.method, r.path.as_str()), (method, path));
    assert_eq!(r.headers, pairs(headers));
    assert_eq!(r.body, body);
    assert_eq!(c.action, action);
    assert_eq!(c.codes.get(), 1);
}

fn answer(kind: VendorKind, c: &RevokeCall, status: u16, retry_after: Option<&str>, body: &str) -> RevokeOutcome {
    for_kind(kind).parse_revoke(
        c,
        &VendorResponse {
            status,
            retry_after,
            body: body.as_bytes(),
        },
    )
}

/// The answers every vendor reads alike, through the shared reading: 429 with Retry-After, a
/// 5xx (retryable: a revoke twice leaves the code as once), a 401, and garbage in a 2xx.
fn assert_shared_answers(kind: VendorKind, c: &RevokeCall) {
    assert_eq!(
        answer(kind, c, 429, Some("3"), r#"{"message":"slow down"}"#),
        RevokeOutcome::Throttled {
            retry_after: Some(RetryAfter::Delay(Duration::from_secs(3))),
            message: "slow down".into()
        },
        "{kind}"
    );
    for status in [500, 502, 503, 504] {
        match answer(kind, c, status, None, "<html>oops</html>") {
            RevokeOutcome::Failed {
                retryable: true,
                cause: FailureCause::ServerError { status: s },
                ..
            } if s == status => {}
            other => panic!("{kind} {status}: {other:?}"),
        }
    }
    assert!(
        matches!(
            answer(kind, c, 401, None, r#"{"message":"expired"}"#),
            RevokeOutcome::Rejected { status: 401, .. }
        ),
        "{kind}"
    );
    for garbage in ["<html>Sign in</html>", "", "{\"promocode\":", "[]", "null"] {
        match answer(kind, c, 200, None, garbage) {
            RevokeOutcome::Failed {
                retryable: false,
                cause: FailureCause::UnreadableAnswer { status: 200 },
                message,
            } => assert!(message.contains("read it back"), "{kind}: {message}"),
            other => panic!("{kind} 200 {garbage:?}: {other:?}"),
        }
    }
}

fn not_found(kind: VendorKind, c: &RevokeCall, body: &str) -> (Missing, String) {
    match answer(kind, c, 404, None, body) {
        RevokeOutcome::NotFound { missing, message } => (missing, message),
        other => panic!("{kind}: a 404 is not found at the vendor, got {other:?}"),
    }
}

#[test]
fn spacebring_archives() {
    let kind = VendorKind::Spacebring;
    let c = call(kind, false);
    // lifecycle/spacebring.md §3: PUT /discounts/promocodes/v1/{id}/archive, no body and no
    // content type, the network header with a bearer token ("Common to every call").
    assert_call(
        &c,
        "PUT",
        &format!("/discounts/promocodes/v1/{SPACEBRING_ID}/archive"),
        &[("spacebring-network-id", NETWORK_ID)],
        None,
        RevokeAction::Archived,
    );
    assert!(c.translation.warnings.is_empty());

    // §3's example answer: archiveDate set.
    let archived = r#"{"promocode":{"id":"5b0e7d42-91c3-4f6a-a1d8-0c2f3e9b7a11","code":"AUTUMNDESK",
        "archiveDate":"2025-10-02T12:00:00Z","expiration":{"enabled":true,"date":"2025-11-30T23:59:59Z"}}}"#;
    assert_eq!(
        answer(kind, &c, 200, None, archived),
        RevokeOutcome::Revoked {
            action: RevokeAction::Archived
        }
    );
    // A second archive is undocumented; the same 200 reads the same way (archived, not "already").
    assert_eq!(
        answer(kind, &c, 200, None, archived),
        answer(kind, &c, 200, None, archived)
    );
    // A 200 without archiveDate is to be read back (§3 client rules), not believed.
    for body in [
        r#"{"promocode":{"id":"x","archiveDate":null}}"#,
        r#"{"promocode":{"id":"x"}}"#,
        r#"{"promocode":{"id":"x","archiveDate":""}}"#,
    ] {
        assert!(
            matches!(
                answer(kind, &c, 200, None, body),
                RevokeOutcome::Failed {
                    cause: FailureCause::UnreadableAnswer { status: 200 },
                    retryable: false,
                    ..
                }
            ),
            "{body}"
        );
    }
    let (missing, message) = not_found(kind, &c, r#"{"message":"promocode not found","type":"not_found"}"#);
    assert_eq!(missing, Missing::Code);
    assert_eq!(message, "not_found: promocode not found");
    assert!(matches!(
        answer(
            kind,
            &c,
            400,
            None,
            r#"{"message":"already archived","type":"invalid"}"#
        ),
        RevokeOutcome::Rejected { status: 400, .. }
    ));
    assert_shared_answers(kind, &c);
}

#[test]
fn spacebring_asked_to_delete_archives_and_says_so() {
    let c = call(VendorKind::Spacebring, true);
    assert_eq!(c.action, RevokeAction::Archived);
    assert_eq!(
        c.translation.request,
        call(VendorKind::Spacebring, false).translation.request
    );
    let warnings: Vec<(&str, &str)> = c
        .translation
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(
        warnings,
        [(
            "delete",
            "cannot delete, archived: Spacebring documents no delete for promocodes, and an archive is one-way"
        )]
    );
}

#[test]
fn spacebring_with_basic_auth_sends_no_header_and_refuses_an_id_that_is_no_uuid() {
    let request = golden_request();
    let campaign = campaign();
    let mut ctx = fixtures::context(VendorKind::Spacebring, &campaign);
    ctx.network_id = None;
    let target = RevokeTarget {
        code: &request.promo,
        vendor_id: SPACEBRING_ID,
        passthrough: None,
    };
    let RevokePlan::Call(c) = for_kind(VendorKind::Spacebring)
        .plan_revoke(&target, false, &ctx)
        .unwrap()
    else {
        panic!("a call");
    };
    assert!(c.translation.request.headers.is_empty());
    for id in ["", "../x", "SPRING-20"] {
        let err = plan_with(VendorKind::Spacebring, &request, id, false, &campaign).unwrap_err();
        assert!(
            matches!(&err, BuildError::Invalid { field, .. } if field == "vendor_id"),
            "{id}: {err}"
        );
    }
}

#[test]
fn partnero_deletes_only_when_asked() {
    let kind = VendorKind::Partnero;
    let RevokePlan::Unsupported { reason } = plan(kind, false) else {
        panic!("Partnero has no soft revoke");
    };
    assert!(reason.contains("§4") && reason.contains("delete: true"), "{reason}");

    let c = call(kind, true);
    // lifecycle/partnero.md §5: DELETE /v1/promotion-codes, JSON body {code, coupon:{uuid_code}},
    // Accept and Content-Type as for every call with a body.
    assert_call(
        &c,
        "DELETE",
        "/v1/promotion-codes",
        &[("Accept", "application/json"), ("Content-Type", "application/json")],
        Some(json!({ "code": "SPRING-20", "coupon": { "uuid_code": "coupon_123" } })),
        RevokeAction::Deleted,
    );
    // §5's example answer.
    assert_eq!(
        answer(
            kind,
            &c,
            200,
            None,
            r#"{ "data": { "status": 1, "message": "deleted" } }"#
        ),
        RevokeOutcome::Revoked {
            action: RevokeAction::Deleted
        }
    );
    assert_eq!(
        answer(
            kind,
            &c,
            200,
            None,
            r#"{ "data": { "status": 0, "message": "Coupon mismatch." } }"#
        ),
        RevokeOutcome::Rejected {
            status: 200,
            message: "Coupon mismatch.".into()
        }
    );
    // The other calls' envelope, with status outside data, is not this call's success.
    assert!(matches!(
        answer(kind, &c, 200, None, r#"{ "status": 1, "message": "deleted" }"#),
        RevokeOutcome::Failed {
            cause: FailureCause::UnreadableAnswer { .. },
            ..
        }
    ));
    // A second delete: the code is gone, so the API-wide 404.
    let (missing, message) = not_found(kind, &c, r#"{"message":"Resource not found."}"#);
    assert_eq!((missing, message.as_str()), (Missing::Code, "Resource not found."));
    assert_eq!(
        answer(kind, &c, 422, None, r#"{"message":"The code field is required."}"#),
        RevokeOutcome::Rejected {
            status: 422,
            message: "The code field is required.".into()
        }
    );
    assert_shared_answers(kind, &c);
}

#[test]
fn partnero_needs_the_coupon_and_a_code_word() {
    let request = golden_request();
    let mut campaign = campaign();
    campaign.upstreams.get_mut("partnero").unwrap().coupon_uuid = None;
    let err = plan_with(VendorKind::Partnero, &request, "SPRING-20", true, &campaign).unwrap_err();
    assert!(
        matches!(&err, BuildError::Mapping(m) if m.contains("coupon_uuid")),
        "{err}"
    );
    let err = plan_with(VendorKind::Partnero, &request, "SPRING 20", true, &self::campaign()).unwrap_err();
    assert!(
        matches!(&err, BuildError::Invalid { field, .. } if field == "vendor_id"),
        "{err}"
    );
}

const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";

#[test]
fn moltin_deletes_one_code_only_when_asked() {
    let kind = VendorKind::Moltin;
    let RevokePlan::Unsupported { reason } = plan(kind, false) else {
        panic!("Moltin has no per-code soft revoke");
    };
    assert!(reason.contains("§5") && reason.contains("enabled"), "{reason}");

    let c = call(kind, true);
    // lifecycle/moltin.md §6: DELETE /v2/promotions/:promotionID/codes/:code, no body.
    assert_call(
        &c,
        "DELETE",
        &format!("/v2/promotions/{PROMOTION}/codes/SPRING-20"),
        &[("Accept", "application/json")],
        None,
        RevokeAction::Deleted,
    );
    assert_eq!(
        answer(kind, &c, 204, None, ""),
        RevokeOutcome::Revoked {
            action: RevokeAction::Deleted
        }
    );
    // §6's 404, `errors` as an object (as that page shows it) and as an array.
    for body in [
        r#"{"errors":{"status":404,"title":"Not Found","detail":"promotion not found"}}"#,
        r#"{"errors":[{"status":"404","title":"Not Found","detail":"promotion not found"}]}"#,
    ] {
        let (missing, message) = not_found(kind, &c, body);
        assert_eq!(
            (missing, message.as_str()),
            (Missing::Parent, "promotion not found"),
            "{body}"
        );
    }
    // Any other 404 (a second delete: the code is gone) is the code not found.
    let (missing, _) = not_found(
        kind,
        &c,
        r#"{"errors":[{"status":404,"title":"Not Found","detail":"code not found"}]}"#,
    );
    assert_eq!(missing, Missing::Code);
    // A 200 with a body is not §6's 204.
    assert!(matches!(
        answer(kind, &c, 200, None, r#"{"data":{}}"#),
        RevokeOutcome::Failed {
            cause: FailureCause::UnreadableAnswer { status: 200 },
            ..
        }
    ));
    assert_shared_answers(kind, &c);
}

#[test]
fn moltin_percent_encodes_the_code_in_the_path() {
    let request = golden_request();
    let c = match plan_with(VendorKind::Moltin, &request, "A B/C?", true, &campaign()).unwrap() {
        RevokePlan::Call(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        c.translation.request.path,
        format!("/v2/promotions/{PROMOTION}/codes/A%20B%2FC%3F")
    );
    for id in ["", ".", ".."] {
        let err = plan_with(VendorKind::Moltin, &request, id, true, &campaign()).unwrap_err();
        assert!(
            matches!(&err, BuildError::Invalid { field, .. } if field == "vendor_id"),
            "{id:?}: {err}"
        );
    }
}

#[test]
fn moltin_bulk_deletes_up_to_50_codes() {
    let kind = VendorKind::Moltin;
    let adapter = for_kind(kind);
    assert_eq!(adapter.revoke_batch_size(), 50);
    let request = golden_request();
    let campaign = campaign();
    let ctx = fixtures::context(kind, &campaign);
    let ids: Vec<String> = (0..51).map(|i| format!("HARBOUR{i}")).collect();
    let targets: Vec<RevokeTarget<'_>> = ids
        .iter()
        .map(|id| RevokeTarget {
            code: &request.promo,
            vendor_id: id,
            passthrough: None,
        })
        .collect();

    let RevokePlan::Call(c) = adapter.plan_revoke_batch(&targets[..2], true, &ctx).unwrap() else {
        panic!("a call");
    };
    // §6b: DELETE /v2/promotions/:promotionID/codes with {data:{type, codes:[{code}]}}.
    let r = &c.translation.request;
    assert_eq!(
        (r.method, r.path.as_str()),
        ("DELETE", format!("/v2/promotions/{PROMOTION}/codes").as_str())
    );
    assert_eq!(
        r.headers,
        pairs(&[("Accept", "application/json"), ("Content-Type", "application/json")])
    );
    assert_eq!(
        r.body,
        Some(
            json!({ "data": { "type": "promotion_codes", "codes": [ { "code": "HARBOUR0" }, { "code": "HARBOUR1" } ] } })
        )
    );
    assert_eq!((c.action, c.codes.get()), (RevokeAction::Deleted, 2));
    assert_eq!(
        answer(kind, &c, 204, None, ""),
        RevokeOutcome::Revoked {
            action: RevokeAction::Deleted
        }
    );
    // Which codes a 404 of the bulk call means is undocumented: a refusal the engine halves.
    assert!(matches!(
        answer(kind, &c, 404, None, r#"{"errors":[{"detail":"code not found"}]}"#),
        RevokeOutcome::Rejected { status: 404, .. }
    ));
    // The promotion missing is the promotion missing, for a batch too.
    assert!(matches!(
        answer(kind, &c, 404, None, r#"{"errors":[{"detail":"promotion not found"}]}"#),
        RevokeOutcome::NotFound {
            missing: Missing::Parent,
            ..
        }
    ));
    assert_shared_answers(kind, &c);

    let RevokePlan::Call(full) = adapter.plan_revoke_batch(&targets[..50], true, &ctx).unwrap() else {
        panic!("a call");
    };
    assert_eq!(full.codes.get(), 50);
    for bad in [&targets[..0], &targets[..51]] {
        let err = adapter.plan_revoke_batch(bad, true, &ctx).unwrap_err();
        assert!(
            matches!(&err, BuildError::Invalid { field, .. } if field == "codes"),
            "{err}"
        );
    }
    // A batch of one is §6's single delete; a soft batch is unsupported like a soft single.
    assert_eq!(
        adapter.plan_revoke_batch(&targets[..1], true, &ctx).unwrap(),
        adapter.plan_revoke(&targets[0], true, &ctx).unwrap()
    );
    assert!(matches!(
        adapter.plan_revoke_batch(&targets[..2], false, &ctx).unwrap(),
        RevokePlan::Unsupported { .. }
    ));
}

#[test]
fn vendors_without_a_bulk_revoke_take_one_code_a_call() {
    let request = golden_request();
    let campaign = campaign();
    for kind in [VendorKind::Spacebring, VendorKind::Partnero, VendorKind::LimioV2] {
        let adapter = for_kind(kind);
        assert_eq!(adapter.revoke_batch_size(), 1, "{kind}");
        let t = RevokeTarget {
            code: &request.promo,
            vendor_id: vendor_id(kind),
            passthrough: None,
        };
        let ctx = fixtures::context(kind, &campaign);
        assert!(adapter.plan_revoke_batch(&[t, t], true, &ctx).is_err(), "{kind}");
        assert_eq!(
            adapter.plan_revoke_batch(&[t], true, &ctx).unwrap(),
            adapter.plan_revoke(&t, true, &ctx).unwrap()
        );
    }
}

#[test]
fn limio_v2_deactivates_with_the_whole_created_data() {
    let kind = VendorKind::LimioV2;
    let c = call(kind, false);
    // lifecycle/limio.md §3/§4: PUT /api/objects/limio/promo_codes_v2/{id} (the base URL ends
    // in /api), the complete `data` as created with status false, no `name`. The data is the
    // golden create's (tests/golden.rs `limio_v2`), status aside.
    let mut data = fixtures_create_data(kind);
    data["status"] = json!(false);
    assert_call(
        &c,
        "PUT",
        "/objects/limio/promo_codes_v2/promo_code_v2-SPRING-20",
        &[("Accept", "application/json"), ("Content-Type", "application/json")],
        Some(json!({ "data": data })),
        RevokeAction::Deactivated,
    );
    assert_eq!(
        c.translation.request.body.as_ref().unwrap()["data"],
        json!({
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
        })
    );
    // §3's example answer; a second deactivate is undocumented, and reads the same.
    let ok = r#"{ "id": "promo_code_v2-WINTER20", "sort_key": "object/promo_code_v2",
                  "data": { "promoCode": "WINTER20", "status": false } }"#;
    assert_eq!(
        answer(kind, &c, 200, None, ok),
        RevokeOutcome::Revoked {
            action: RevokeAction::Deactivated
        }
    );
    // An answer whose data is still active did not deactivate it.
    for body in [
        r#"{ "id": "promo_code_v2-X", "data": { "status": true } }"#,
        r#"{ "id": "promo_code_v2-X" }"#,
    ] {
        assert!(
            matches!(
                answer(kind, &c, 200, None, body),
                RevokeOutcome::Failed {
                    cause: FailureCause::UnreadableAnswer { .. },
                    ..
                }
            ),
            "{body}"
        );
    }
    let (missing, _) = not_found(kind, &c, "");
    assert_eq!(missing, Missing::Code);
    assert!(matches!(
        answer(kind, &c, 400, None, r#"{"message":"missing required fields"}"#),
        RevokeOutcome::Rejected { status: 400, .. }
    ));
    assert_shared_answers(kind, &c);
}

/// The golden create's `data` for `kind`.
fn fixtures_create_data(kind: VendorKind) -> Value {
    let request = golden_request();
    let campaign = campaign();
    let t = promo_adapters::adapter::translate(
        for_kind(kind).as_ref(),
        &request.promo,
        request.on_unsupported,
        request.passthrough.get(fixtures::upstream_name(kind)),
        &fixtures::context(kind, &campaign),
    )
    .unwrap();
    t.request.body.unwrap()["data"].clone()
}

#[test]
fn limio_v2_resends_the_creates_passthrough_fields() {
    let mut body = full_request();
    body["passthrough"] = json!({ "limio-v2": { "customField": "kept" } });
    let request = parse(&body);
    let RevokePlan::Call(c) = plan_with(
        VendorKind::LimioV2,
        &request,
        "promo_code_v2-SPRING-20",
        false,
        &campaign(),
    )
    .unwrap() else {
        panic!("a call");
    };
    let data = &c.translation.request.body.as_ref().unwrap()["data"];
    assert_eq!(
        (data["customField"].clone(), data["status"].clone()),
        (json!("kept"), json!(false))
    );
}

#[test]
fn limio_v2_deletes_when_asked() {
    let kind = VendorKind::LimioV2;
    let c = call(kind, true);
    // §5: DELETE /api/objects/limio/promo_codes_v2/{id}, no body.
    assert_call(
        &c,
        "DELETE",
        "/objects/limio/promo_codes_v2/promo_code_v2-SPRING-20",
        &[("Accept", "application/json")],
        None,
        RevokeAction::Deleted,
    );
    // §5's example answer, and without the optional httpStatusCode.
    for ok in [
        r#"{ "httpStatusCode": 200, "requestId": "7QK2M9XZ", "attempts": 1, "totalRetryDelay": 0 }"#,
        r#"{ "requestId": "7QK2M9XZ" }"#,
    ] {
        assert_eq!(
            answer(kind, &c, 200, None, ok),
            RevokeOutcome::Revoked {
                action: RevokeAction::Deleted
            },
            "{ok}"
        );
    }
    assert!(matches!(
        answer(kind, &c, 200, None, r#"{ "httpStatusCode": 404 }"#),
        RevokeOutcome::Failed {
            cause: FailureCause::UnreadableAnswer { .. },
            ..
        }
    ));
    // A second delete: the object is gone.
    let (missing, _) = not_found(kind, &c, r#"{"message":"not found"}"#);
    assert_eq!(missing, Missing::Code);
    assert_shared_answers(kind, &c);
}

#[test]
fn limio_v2_refuses_an_id_that_is_not_a_v2_object() {
    let request = golden_request();
    for id in ["promo_code_v3-SPRING-20", "SPRING-20", "promo_code_v2-", ""] {
        for delete in [false, true] {
            let err = plan_with(VendorKind::LimioV2, &request, id, delete, &campaign()).unwrap_err();
            assert!(
                matches!(&err, BuildError::Invalid { field, .. } if field == "vendor_id"),
                "{id}: {err}"
            );
        }
    }
}

#[test]
fn limio_v3_and_loop_document_no_revoke() {
    for (kind, cites) in [(VendorKind::LimioV3, "limio.md §6"), (VendorKind::Loop, "loop.md §4")] {
        for delete in [false, true] {
            match plan(kind, delete) {
                RevokePlan::Unsupported { reason } => assert!(reason.contains(cites), "{kind}: {reason}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }
}

/// Every vendor's revoke action is named as the result reports it.
#[test]
fn actions_serialize_as_their_names() {
    for action in [RevokeAction::Archived, RevokeAction::Deactivated, RevokeAction::Deleted] {
        assert_eq!(serde_json::to_value(action).unwrap(), json!(action.as_str()));
        assert_eq!(action.to_string(), action.as_str());
    }
    assert_eq!(
        serde_json::to_value(promo_adapters::Operation::Revoke { delete: true }).unwrap(),
        json!({ "revoke": { "delete": true } })
    );
}
