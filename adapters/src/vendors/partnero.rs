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
