//! Partnero: `POST /v1/promotion-codes` (shared/vendor-docs/partnero-create-promotion-code.md).
//!
//! A Partnero promotion code attaches to a coupon (`coupon_uuid`, from the campaign mapping)
//! that grants the discount. Every limit is a documented `*_status` flag with its `*_value`;
//! the gateway always sends the flag, `false` included, so the code's limits are stated in full
//! rather than left to whatever the coupon defaults to.
//!
//! Revoke: `DELETE /v1/promotion-codes` with the code and its coupon in the body
//! (shared/vendor-docs/lifecycle/partnero.md §5), a permanent delete. Partnero has no soft
//! revoke (§4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::adapter::{
    account_amount, check_parent_grants, classify, mapped, Adapter, BareAmount, BuildContext, BuildError, Outcome,
    Translation, VendorKind, VendorRequest, VendorResponse, Warning,
};
use crate::dates::expiry_field;
use crate::model::{Party, PromoCode};
use crate::money::{to_major, Round};
use crate::operation::{classify_revoke, RevokeAction, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
use crate::policy::{Field, Support};
use crate::read::{
    classify_read, count, Cursor, ListPlan, Liveness, Page, ReadBack, ReadOutcome, ReadPlan, ReadTarget, Slot,
    VendorCode,
};
use crate::settings::Vendor;

pub struct Partnero;

/// `kind = "partnero"`: `currency`, the program's, in which Partnero reads a bare
/// `minimum_order_value`; and `timezone`, the zone of its date-only expiry.
pub const VENDOR: Vendor = Vendor {
    kind: "partnero",
    name: "Partnero",
    takes: &["currency", "timezone"],
    configure: |_| Ok(VendorKind::Partnero),
};

/// Partnero's documented code limit.
pub const MAX_CODE_LEN: usize = 100;

/// `minimum_order_value` is a bare whole number in the Partnero program's currency.
const MINIMUM_ORDER: BareAmount = BareAmount {
    vendor: VendorKind::Partnero,
    field: "minimum_order.currency",
    vendor_field: "minimum_order_value",
    account: "program",
    what: "minimum orders",
};

#[derive(Debug, Serialize)]
struct CreatePromotionCode<'a> {
    coupon_uuid: &'a str,
    code: &'a str,
    first_time_order: bool,
    limit_to_specific_partner: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon_specific_partners: Option<SpecificPartner<'a>>,
    limit_to_specific_customer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon_specific_customers: Option<SpecificCustomer<'a>>,
    minimum_order_status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_order_value: Option<serde_json::Number>,
    expiration_date_status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_date_value: Option<String>,
    redemption_times_status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    redemption_times_value: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
}

#[derive(Debug, Serialize)]
struct SpecificPartner<'a> {
    id: &'a str,
    full_name: &'a str,
}

#[derive(Debug, Serialize)]
struct SpecificCustomer<'a> {
    id: &'a str,
    customer_full_name: &'a str,
}

/// The documented 200 envelope: `{data, status, message}`. Only `status` and `message` are read
/// to tell a yes from a no, so a refusal whose `data` is PHP's empty array `[]` (not an object)
/// is still read as the refusal it is.
#[derive(Debug, Deserialize)]
struct Envelope {
    status: i64,
    #[serde(default)]
    message: Option<String>,
}

/// The delete body of §5: the pair (`code`, `coupon.uuid_code`) names the code.
#[derive(Debug, Serialize)]
struct DeletePromotionCode<'a> {
    code: &'a str,
    coupon: CouponRef<'a>,
}

#[derive(Debug, Serialize)]
struct CouponRef<'a> {
    uuid_code: &'a str,
}

/// The delete answer, `{ "data": { "status": 1, "message": "deleted" } }`: unlike every other
/// call's, its `status` sits inside `data` (§5).
#[derive(Debug, Deserialize)]
struct Deleted {
    data: Envelope,
}

/// The fields a promotion-code object gives back (§"The promotion-code object"; the reconcile
/// checklist), under the names the create body used. Each value counts only with its `*_status`
/// on, so a switched-off limit reads as none whatever value it carries (`minimum_order_value: 0`).
const READ_BACK: &[ReadBack] = &[
    ReadBack {
        field: Field::ExpiresAt,
        sent: Slot::switched("/expiration_date_value", "/expiration_date_status"),
        read: Slot::switched("/expiration_date_value", "/expiration_date_status"),
    },
    ReadBack {
        field: Field::MaxRedemptions,
        sent: Slot::switched("/redemption_times_value", "/redemption_times_status"),
        read: Slot::switched("/redemption_times_value", "/redemption_times_status"),
    },
    ReadBack {
        field: Field::FirstTimeOnly,
        sent: Slot::at("/first_time_order"),
        read: Slot::at("/first_time_order"),
    },
    ReadBack {
        field: Field::MinimumOrder,
        sent: Slot::switched("/minimum_order_value", "/minimum_order_status"),
        read: Slot::switched("/minimum_order_value", "/minimum_order_status"),
    },
    ReadBack {
        field: Field::Partner,
        sent: Slot::switched("/coupon_specific_partners", "/limit_to_specific_partner"),
        read: Slot::switched("/coupon_specific_partners", "/limit_to_specific_partner"),
    },
    ReadBack {
        field: Field::Customer,
        sent: Slot::switched("/coupon_specific_customers", "/limit_to_specific_customer"),
        read: Slot::switched("/coupon_specific_customers", "/limit_to_specific_customer"),
    },
    ReadBack {
        field: Field::Metadata,
        sent: Slot::at("/metadata"),
        read: Slot::at("/metadata"),
    },
];

/// The page size sent to the list: valid under both of the rules the pages give (§2).
const LIST_LIMIT: u32 = 100;

/// §2's cap on the walk.
const MAX_PAGES: u64 = 10_000;

/// A promotion-code object read back. Partnero has no status flag (its presence is its
/// liveness, §1); a parent coupon that is not `active` leaves the code unusable, which is the
/// only revocation a present code can show.
fn promotion_code(object: &Value) -> Option<VendorCode> {
    let code = object.get("code")?.as_str()?.to_owned();
    let coupon_off = object.pointer("/coupon/active") == Some(&Value::Bool(false));
    let warnings = coupon_off
        .then(|| Warning {
            field: "coupon".into(),
            message: format!(
                "the code is present but its parent coupon `{}` is not active, so it cannot be redeemed",
                object
                    .pointer("/coupon/uuid_code")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ),
        })
        .into_iter()
        .collect();
    Some(VendorCode {
        vendor_id: Some(code.clone()),
        code,
        liveness: if coupon_off {
            Liveness::Revoked
        } else {
            Liveness::Active
        },
        redemptions: count(object.get("times_redeemed")),
        object: object.clone(),
        warnings,
    })
}

/// A list cursor: the page to ask for, and the first code of the page before it, so that a page
/// repeating the one before ends the walk (§2: "stop if a page repeats the previous page's codes").
fn list_cursor(page: u64, first: Option<&str>) -> Cursor {
    Cursor(format!("{page} {}", first.unwrap_or_default()))
}

fn read_cursor(cursor: Option<&Cursor>) -> (u64, &str) {
    cursor
        .and_then(|c| {
            let (page, first) = c.0.split_once(' ')?;
            Some((page.parse().ok()?, first))
        })
        .unwrap_or((1, ""))
}

/// Whether a code uses only Partnero's documented characters: `A-Z a-z 0-9 - _`.
pub fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn named<'a>(party: &'a Party, field: &str) -> Result<&'a str, BuildError> {
    party.name.as_deref().ok_or_else(|| BuildError::Invalid {
        field: format!("{field}.name"),
        rule: format!("Partnero restricts a code to a {field} by id and full name; give {field}.name"),
    })
}

impl Adapter for Partnero {
    fn kind(&self) -> VendorKind {
        VendorKind::Partnero
    }

    fn account_currency_amounts(&self) -> Option<&'static str> {
        Some("minimum_order")
    }

    fn support(&self, field: Field) -> Support {
        match field {
            Field::PercentOff | Field::AmountOff | Field::Duration => Support::Parent,
            Field::ExpiresAt => Support::Lossy("date only, the last day that ends before expires_at"),
            Field::MinimumOrder => {
                Support::Lossy("whole major units rounded up; only in the currency upstreams.NAME.currency declares")
            }
            Field::MaxRedemptions | Field::FirstTimeOnly | Field::Customer | Field::Partner | Field::Metadata => {
                Support::Carried
            }
            Field::Active | Field::StartsAt | Field::Description => Support::NotCarried,
        }
    }

    fn build(&self, code: &PromoCode, skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        if !is_valid_code(&code.code) {
            return Err(BuildError::Invalid {
                field: "code".into(),
                rule: format!(
                    "Partnero takes 1 to {MAX_CODE_LEN} characters of A-Z, a-z, 0-9, - and _; got `{}`",
                    code.code
                ),
            });
        }
        let coupon_uuid = mapped(ctx, self.kind(), "coupon_uuid", |m| m.coupon_uuid.as_ref())?;
        check_parent_grants(code, ctx, self.kind())?;
        let mut warnings = Vec::new();

        let partner = code
            .partner
            .as_ref()
            .map(|p| {
                Ok::<_, BuildError>(SpecificPartner {
                    id: &p.id,
                    full_name: named(p, "partner")?,
                })
            })
            .transpose()?;
        let customer = code
            .customer
            .as_ref()
            .map(|c| {
                Ok::<_, BuildError>(SpecificCustomer {
                    id: &c.id,
                    customer_full_name: named(c, "customer")?,
                })
            })
            .transpose()?;
        let minimum_order_value = code
            .minimum_order
            .map(|m| {
                let m = account_amount(ctx, &MINIMUM_ORDER, m)?;
                let (value, exact) = to_major(m.amount, m.currency.exponent(), 0, Round::Up);
                if !exact {
                    warnings.push(Warning {
                        field: "minimum_order".into(),
                        message: format!("sent as {value} (rounded up from {m}): Partnero takes whole units"),
                    });
                }
                Ok::<_, BuildError>(value)
            })
            .transpose()?;
        let expiration_date_value = code.expires_at.map(|t| {
            let (date, warning) = expiry_field(t, ctx.timezone);
            warnings.extend(warning);
            date
        });
        let metadata = (!skipped.contains(&Field::Metadata) && !code.metadata.is_empty()).then_some(&code.metadata);

        let body = CreatePromotionCode {
            coupon_uuid,
            code: &code.code,
            first_time_order: code.first_time_only,
            limit_to_specific_partner: partner.is_some(),
            coupon_specific_partners: partner,
            limit_to_specific_customer: customer.is_some(),
            coupon_specific_customers: customer,
            minimum_order_status: minimum_order_value.is_some(),
            minimum_order_value,
            expiration_date_status: expiration_date_value.is_some(),
            expiration_date_value,
            redemption_times_status: code.max_redemptions.is_some(),
            redemption_times_value: code.max_redemptions,
            metadata,
        };
        let mut headers = vec![("Accept".to_owned(), "application/json".to_owned())];
        headers.extend(super::json_headers());
        Ok(Translation {
            request: VendorRequest {
                method: "POST",
                path: "/v1/promotion-codes".into(),
                headers,
                body: Some(serde_json::to_value(body).expect("serializable")),
            },
            warnings,
        })
    }

    fn reserved_keys(&self) -> &'static [&'static str] {
        &[
            "coupon_uuid",
            "code",
            "first_time_order",
            "limit_to_specific_partner",
            "coupon_specific_partners",
            "limit_to_specific_customer",
            "coupon_specific_customers",
            "minimum_order_status",
            "minimum_order_value",
            "expiration_date_status",
            "expiration_date_value",
            "redemption_times_status",
            "redemption_times_value",
            "metadata",
        ]
    }

    fn parse(&self, code: &PromoCode, response: &VendorResponse<'_>) -> Outcome {
        // A 2xx whose `status` is not 1 is Partnero saying no in a success envelope.
        if (200..300).contains(&response.status) {
            if let Ok(envelope) = serde_json::from_slice::<Envelope>(response.body) {
                if envelope.status != 1 {
                    let message = envelope
                        .message
                        .filter(|m| !m.trim().is_empty())
                        .unwrap_or_else(|| format!("status {} without a message", envelope.status));
                    return Outcome::Rejected {
                        status: response.status,
                        message,
                    };
                }
            }
        }
        classify(self.kind(), response, |v| {
            let envelope: Envelope = serde_json::from_value(v.clone()).ok()?;
            if envelope.status != 1 {
                return None;
            }
            // The documented success carries the created code as an object under `data`.
            let data = v.get("data")?.as_object()?;
            // Partnero returns no id of its own: the code is the id.
            let echoed = data.get("code").and_then(Value::as_str);
            Some(echoed.map_or_else(|| code.code.clone(), str::to_owned))
        })
    }

    /// Deletes only when asked to: §4's client rule reports a soft revoke as unsupported and
    /// escalates to the permanent delete only when the caller allows a hard revoke.
    fn plan_revoke(
        &self,
        target: &RevokeTarget<'_>,
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        if !delete {
            return Ok(RevokePlan::Unsupported {
                reason: "Partnero documents no way to switch a code off (lifecycle/partnero.md §4); its only revoke \
                         deletes the code for good: ask with delete: true"
                    .into(),
            });
        }
        // The create answer echoes the code (Partnero may generate it), and that is the vendor id.
        if !is_valid_code(target.vendor_id) {
            return Err(BuildError::Invalid {
                field: "vendor_id".into(),
                rule: format!("not a Partnero code: `{}`", target.vendor_id),
            });
        }
        let uuid_code = mapped(ctx, self.kind(), "coupon_uuid", |m| m.coupon_uuid.as_ref())?;
        let body = DeletePromotionCode {
            code: target.vendor_id,
            coupon: CouponRef { uuid_code },
        };
        let mut headers = vec![super::accept_json()];
        headers.extend(super::json_headers());
        let request = VendorRequest {
            method: "DELETE",
            path: "/v1/promotion-codes".into(),
            headers,
            body: Some(serde_json::to_value(body).expect("serializable")),
        };
        Ok(RevokePlan::Call(RevokeCall::one(
            Translation {
                request,
                warnings: Vec::new(),
            },
            RevokeAction::Deleted,
        )))
    }

    /// Success is a `200` with `data.status == 1` (§5 client rules); any other `data.status` is
    /// Partnero saying no in a success envelope, as at create. A 404, undocumented here, falls
    /// under the API-wide "resource does not exist": not found at the vendor.
    fn parse_revoke(&self, call: &RevokeCall, response: &VendorResponse<'_>) -> RevokeOutcome {
        if (200..300).contains(&response.status) {
            if let Ok(Deleted { data }) = serde_json::from_slice::<Deleted>(response.body) {
                if data.status != 1 {
                    return RevokeOutcome::Rejected {
                        status: response.status,
                        message: data
                            .message
                            .filter(|m| !m.trim().is_empty())
                            .unwrap_or_else(|| format!("status {} without a message", data.status)),
                    };
                }
            }
        }
        classify_revoke(self.kind(), call, response, |json| {
            json.and_then(|v| serde_json::from_value::<Deleted>(v.clone()).ok())
                .is_some_and(|d| d.data.status == 1)
        })
    }

    /// Get-one by the code word (§1), the only key Partnero has.
    fn plan_read(&self, target: &ReadTarget<'_>, _ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        let code = target.vendor_id.unwrap_or(target.code);
        if !is_valid_code(code) {
            return Err(BuildError::Invalid {
                field: "code".into(),
                rule: format!("not a Partnero code: `{code}`"),
            });
        }
        Ok(ReadPlan::Get(VendorRequest {
            method: "GET",
            path: format!("/v1/promotion-codes/{code}"),
            headers: vec![super::accept_json()],
            body: None,
        }))
    }

    /// `{data, status: 1}`; any other `status` is no documented success.
    fn parse_read(&self, response: &VendorResponse<'_>) -> ReadOutcome<VendorCode> {
        classify_read(self.kind(), response, |json| {
            let json = json?;
            (json.get("status")?.as_i64()? == 1).then_some(())?;
            promotion_code(json.get("data")?)
        })
    }

    /// `?limit=100&page=N` (§2). The list covers the whole program and cannot be narrowed to a
    /// coupon, so every page says so.
    fn plan_list(&self, after: Option<&Cursor>, _ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        let (page, _) = read_cursor(after);
        Ok(ListPlan::Page(VendorRequest {
            method: "GET",
            path: format!("/v1/promotion-codes?limit={LIST_LIMIT}&page={page}"),
            headers: vec![super::accept_json()],
            body: None,
        }))
    }

    /// Pages until `links.next` is `null` or `data` is empty (§2), at most [`MAX_PAGES`].
    fn parse_list(&self, after: Option<&Cursor>, response: &VendorResponse<'_>) -> ReadOutcome<Page> {
        let (page, previous_first) = read_cursor(after);
        classify_read(self.kind(), response, |json| {
            let json = json?;
            (json.get("status")?.as_i64()? == 1).then_some(())?;
            let codes = json
                .get("data")?
                .as_array()?
                .iter()
                .map(promotion_code)
                .collect::<Option<Vec<_>>>()?;
            let mut warnings = vec![Warning {
                field: "list".into(),
                message: "Partnero's list covers the whole program, all coupons mixed, and does not say which coupon a code belongs to".into(),
            }];
            let first = codes.first().map(|c| c.code.as_str());
            let more = !matches!(json.pointer("/links/next"), None | Some(Value::Null)) && !codes.is_empty();
            let next = if !more {
                None
            } else if first.is_some() && first == Some(previous_first) {
                warnings.push(Warning {
                    field: "list".into(),
                    message: format!("Partnero's page {page} repeats the page before it; the walk stopped there"),
                });
                None
            } else if page >= MAX_PAGES {
                warnings.push(Warning {
                    field: "list".into(),
                    message: format!(
                        "the walk stopped at Partnero's page {MAX_PAGES}, its cap; codes beyond it were not read"
                    ),
                });
                None
            } else {
                Some(list_cursor(page + 1, first))
            };
            Some(Page { codes, next, warnings })
        })
    }

    fn read_back(&self) -> &'static [ReadBack] {
        READ_BACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::FailureCause;
    use crate::model::{validate, ValidationContext};

    fn code() -> PromoCode {
        let upstreams = ["partnero".to_owned()].into_iter().collect();
        let campaigns = Default::default();
        let ctx = ValidationContext {
            upstreams: &upstreams,
            campaigns: &campaigns,
        };
        let body =
            serde_json::json!({ "code": "SPRING20", "discount": { "percent_off": 20 }, "targets": ["partnero"] });
        validate(&body, &ctx).unwrap().promo
    }

    fn parse(status: u16, body: &str) -> Outcome {
        Partnero.parse(
            &code(),
            &VendorResponse {
                status,
                retry_after: None,
                body: body.as_bytes(),
            },
        )
    }

    #[test]
    fn status_1_is_created_under_the_echoed_code() {
        assert_eq!(
            parse(
                200,
                r#"{"data":{"code":"SPRING20","metadata":[]},"status":1,"message":"ok"}"#
            ),
            Outcome::Created {
                vendor_id: "SPRING20".into()
            }
        );
    }

    #[test]
    fn status_0_is_a_rejection_whatever_data_is() {
        for data in ["null", "[]", "{}"] {
            let body = format!(r#"{{"data":{data},"status":0,"message":"Coupon not found."}}"#);
            assert_eq!(
                parse(200, &body),
                Outcome::Rejected {
                    status: 200,
                    message: "Coupon not found.".into()
                },
                "data {data}"
            );
        }
        assert!(
            matches!(parse(200, r#"{"status":0}"#), Outcome::Rejected { message, .. } if message.contains("status 0"))
        );
    }

    #[test]
    fn status_1_without_a_data_object_is_not_trusted() {
        for body in [
            r#"{"data":null,"status":1}"#,
            r#"{"data":[],"status":1}"#,
            r#"{"status":1}"#,
            r#"{"data":{"code":"X"}}"#,
        ] {
            assert!(
                matches!(
                    parse(200, body),
                    Outcome::Failed {
                        cause: FailureCause::UnreadableAnswer { status: 200 },
                        retryable: false,
                        ..
                    }
                ),
                "{body}"
            );
        }
    }
}
