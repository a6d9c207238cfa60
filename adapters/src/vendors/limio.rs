//! Limio promo codes v2 and v3 (shared/vendor-docs/limio-promo-codes-v2-v3.md).
//!
//! The base URL is the merchant's tenant, `https://{tenant}/api`. v2 carries its discount inline
//! and attaches to a product and rate plan; v3 references a discount catalog item
//! (`attachedDiscount`) that grants the discount. Both take dates, not date-times, so start and
//! expiry go through [`crate::dates`] and are rounded towards the shorter validity.
//!
//! Revoke (shared/vendor-docs/lifecycle/limio.md): v2 switches the code off with an update of
//! its whole `data` and `status: false` (§3, §4), or deletes it (§5), at
//! `/objects/limio/promo_codes_v2/{id}`. The document writes its paths with `/api` in front; the
//! upstream's base URL already ends in it, as create's paths assume. v3 documents no call after
//! create at all (§6).

use serde::{Deserialize, Serialize};

use crate::adapter::{
    check_parent_grants, classify, mapped, translate, Adapter, BuildContext, BuildError, Outcome, Translation,
    VendorKind, VendorRequest, VendorResponse, Warning,
};
use crate::dates::{expiry_field, start_field, whole_day_between};
use crate::mapping::{ApplicationLevel, AttachedDiscount};
use crate::model::OnUnsupported;
use crate::model::{Discount, DurationUnit, PromoCode};
use crate::money::{to_major, Round};
use crate::operation::{classify_revoke, RevokeAction, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
use crate::policy::{Field, Support};
use crate::read::{
    classify_read, Cursor, ListPlan, Liveness, ReadBack, ReadOutcome, ReadPlan, ReadTarget, Slot, VendorCode,
};
use crate::settings::{ApiVersion, SettingError, Vendor};

pub struct LimioV2;
pub struct LimioV3;

/// `kind = "limio"`: `version` (required: which promo-code API the tenant speaks, `"v2"` inline
/// discount or `"v3"` attached catalog discount; configuration, never a guess) picks the adapter;
/// `timezone` is the zone of its date-only fields.
pub const VENDOR: Vendor = Vendor {
    kind: "limio",
    name: "Limio",
    takes: &["version", "timezone"],
    configure: |s| match s.version {
        Some(ApiVersion::V2) => Ok(VendorKind::LimioV2),
        Some(ApiVersion::V3) => Ok(VendorKind::LimioV3),
        None => Err(SettingError {
            key: "version",
            message: "required for kind \"limio\": \"v2\" or \"v3\"".into(),
        }),
    },
};

/// Limio's amounts and percentages take at most 2 decimals.
const MAX_DECIMALS: u32 = 2;

#[derive(Debug, Serialize)]
struct CreateObject<D> {
    name: String,
    id: String,
    data: D,
}

/// The fields v2 and v3 share.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Common<'a> {
    promo_code: &'a str,
    status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    promo_start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    promo_expiry_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    available_quantity: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V2Data<'a> {
    application_level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    referenced_offer_label: Option<&'a str>,
    #[serde(flatten)]
    common: Common<'a>,
    product_details: ProductDetails<'a>,
    discount: V2Discount,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductDetails<'a> {
    product: PathRef<'a>,
    rate_plan: PathRef<'a>,
}

#[derive(Debug, Serialize)]
struct PathRef<'a> {
    path: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V2Discount {
    discount_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    percentage_discount: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_discount: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_type: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct V3Data<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    attached_discount: &'a AttachedDiscount,
}

/// The documented 200 `UpdateObjectsResponse`.
#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

/// The update answer of §3, `{id, sort_key, data}`, "the data as sent".
#[derive(Debug, Deserialize)]
struct Updated {
    #[allow(dead_code)] // read for shape
    id: String,
    data: UpdatedData,
}

#[derive(Debug, Deserialize)]
struct UpdatedData {
    status: bool,
}

/// The delete answer of §5; only the underlying operation's status tells anything.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedObject {
    http_status_code: Option<u16>,
}

fn common<'a>(
    code: &'a PromoCode,
    skipped: &[Field],
    ctx: &BuildContext<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Common<'a>, BuildError> {
    if let (Some(starts_at), Some(expires_at)) = (code.starts_at, code.expires_at) {
        whole_day_between(starts_at, expires_at, ctx.timezone).map_err(|rule| BuildError::Invalid {
            field: "expires_at".into(),
            rule,
        })?;
    }
    let mut date = |field: (String, Option<Warning>)| {
        warnings.extend(field.1);
        field.0
    };
    Ok(Common {
        promo_code: &code.code,
        status: code.active,
        description: code
            .description
            .as_deref()
            .filter(|_| !skipped.contains(&Field::Description)),
        promo_start_date: code.starts_at.map(|t| date(start_field(t, ctx.timezone))),
        promo_expiry_date: code.expires_at.map(|t| date(expiry_field(t, ctx.timezone))),
        usage: code.max_redemptions.map(|n| Usage { available_quantity: n }),
    })
}

/// The documented create endpoint and record type of each version: the path names the
/// collection (`promo_codes_v2`), the object id the record type (`promo_code_v2-<name>`).
const V2: (&str, &str) = ("/objects/limio/promo_codes_v2", "promo_code_v2");
const V3: (&str, &str) = ("/objects/limio/promo_codes_v3", "promo_code_v3");

fn object<D: Serialize>(
    (path, record_type): (&str, &str),
    code: &PromoCode,
    data: D,
    warnings: Vec<Warning>,
) -> Translation {
    let body = CreateObject {
        name: code.code.clone(),
        id: format!("{record_type}-{}", code.code),
        data,
    };
    Translation {
        request: VendorRequest {
            method: "POST",
            path: path.to_owned(),
            headers: super::json_headers(),
            body: Some(serde_json::to_value(body).expect("serializable")),
        },
        warnings,
    }
}

/// The path of one v2 object, by the id create answered (§"Identifiers": stored, not
/// recomputed), which must be a v2 one: §6 forbids calls after create on v3 objects.
fn v2_object_path(vendor_id: &str) -> Result<String, BuildError> {
    let prefix = format!("{}-", V2.1);
    if !vendor_id.starts_with(&prefix) || vendor_id.len() == prefix.len() {
        return Err(BuildError::Invalid {
            field: "vendor_id".into(),
            rule: format!("a Limio v2 object id is `{prefix}<NAME>`, as create answers it; got `{vendor_id}`"),
        });
    }
    Ok(format!(
        "{}/{}",
        V2.0,
        super::id_segment(VendorKind::LimioV2, vendor_id)?
    ))
}

/// The fields a v2 object gives back (§1, §"Reconcile checklist (v2)"): its `data` is the one
/// the create sent, under the same names. Uses so far are not readable on v2.
const V2_READ_BACK: &[ReadBack] = &[
    ReadBack {
        field: Field::PercentOff,
        sent: Slot::at("/data/discount/percentageDiscount"),
        read: Slot::at("/data/discount/percentageDiscount"),
    },
    ReadBack {
        field: Field::AmountOff,
        sent: Slot::at("/data/discount/amountDiscount"),
        read: Slot::at("/data/discount/amountDiscount"),
    },
    ReadBack {
        field: Field::StartsAt,
        sent: Slot::at("/data/promoStartDate"),
        read: Slot::at("/data/promoStartDate"),
    },
    ReadBack {
        field: Field::ExpiresAt,
        sent: Slot::at("/data/promoExpiryDate"),
        read: Slot::at("/data/promoExpiryDate"),
    },
    ReadBack {
        field: Field::MaxRedemptions,
        sent: Slot::at("/data/usage/availableQuantity"),
        read: Slot::at("/data/usage/availableQuantity"),
    },
    ReadBack {
        field: Field::Duration,
        sent: Slot::at("/data/discount/durationLength"),
        read: Slot::at("/data/discount/durationLength"),
    },
    ReadBack {
        field: Field::Description,
        sent: Slot::at("/data/description"),
        read: Slot::at("/data/description"),
    },
];

/// A v2 object read back: `data.status` `false` is inactive ("Status meaning"). §1 documents
/// no response shape for promo codes, so every copy says it was read as the create response
/// and the generic object sample share it.
fn v2_object(object: &serde_json::Value) -> Option<VendorCode> {
    let data = object.get("data")?.as_object()?;
    let code = data
        .get("promoCode")
        .or_else(|| object.get("name"))?
        .as_str()?
        .to_owned();
    let active = data.get("status")?.as_bool()?;
    Some(VendorCode {
        code,
        vendor_id: object.get("id").and_then(serde_json::Value::as_str).map(str::to_owned),
        liveness: if active { Liveness::Active } else { Liveness::Revoked },
        redemptions: None,
        object: object.clone(),
        warnings: vec![Warning {
            field: "data".into(),
            message: "Limio documents no get-one answer for promo codes (lifecycle/limio.md §1): read in the shape its create answer and generic object sample share".into(),
        }],
    })
}

fn parse_created(kind: VendorKind, response: &VendorResponse<'_>) -> Outcome {
    classify(kind, response, |v| {
        serde_json::from_value::<Created>(v.clone()).ok().map(|c| c.id)
    })
}

fn support(field: Field, discount: Support) -> Support {
    match field {
        Field::PercentOff | Field::AmountOff | Field::Duration => discount,
        Field::StartsAt => Support::Lossy("date only, the first day that starts at or after starts_at"),
        Field::ExpiresAt => Support::Lossy("date only, the last day that ends before expires_at"),
        Field::Active | Field::MaxRedemptions | Field::Description => Support::Carried,
        _ => Support::NotCarried,
    }
}

impl Adapter for LimioV2 {
    fn kind(&self) -> VendorKind {
        VendorKind::LimioV2
    }

    fn support(&self, field: Field) -> Support {
        match field {
            Field::AmountOff => Support::Lossy("decimal major units, at most 2 decimals, rounded down (KWD)"),
            _ => support(field, Support::Carried),
        }
    }

    fn build(&self, code: &PromoCode, skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        let kind = self.kind();
        let product = mapped(ctx, kind, "product_path", |m| m.product_path.as_ref())?;
        let rate_plan = mapped(ctx, kind, "rate_plan_path", |m| m.rate_plan_path.as_ref())?;
        let level = *mapped(ctx, kind, "application_level", |m| m.application_level.as_ref())?;
        let (application_level, referenced_offer_label) = match level {
            ApplicationLevel::WholeBasket => ("wholeBasket", None),
            ApplicationLevel::SelectedItems => (
                "selectedItems",
                Some(
                    mapped(ctx, kind, "referenced_offer_label", |m| {
                        m.referenced_offer_label.as_ref()
                    })?
                    .as_str(),
                ),
            ),
        };
        let mut warnings = Vec::new();
        let (duration_length, duration_type) = match code.duration {
            Some(d) => (
                Some(d.length),
                Some(match d.unit {
                    DurationUnit::Days => "Days",
                    DurationUnit::Weeks => "Weeks",
                    DurationUnit::Months => "Months",
                    DurationUnit::Years => "Years",
                }),
            ),
            None => (None, None),
        };
        let discount = match code.discount {
            Discount::Percent(p) => V2Discount {
                discount_type: "DiscountPercentage",
                percentage_discount: Some(p.to_json(MAX_DECIMALS).0),
                amount_discount: None,
                currency: None,
                duration_length,
                duration_type,
            },
            Discount::Amount(m) => {
                let (amount, exact) = to_major(m.amount, m.currency.exponent(), MAX_DECIMALS, Round::Down);
                if !exact {
                    warnings.push(Warning {
                        field: "discount.amount_off".into(),
                        message: format!(
                            "{m} sent as {amount} {}: Limio takes at most {MAX_DECIMALS} decimals, rounded down",
                            m.currency
                        ),
                    });
                }
                V2Discount {
                    discount_type: "DiscountFixedAmount",
                    percentage_discount: None,
                    amount_discount: Some(amount),
                    currency: Some(m.currency.code()),
                    duration_length,
                    duration_type,
                }
            }
        };
        let data = V2Data {
            application_level,
            referenced_offer_label,
            common: common(code, skipped, ctx, &mut warnings)?,
            product_details: ProductDetails {
                product: PathRef { path: product },
                rate_plan: PathRef { path: rate_plan },
            },
            discount,
        };
        Ok(object(V2, code, data, warnings))
    }

    fn passthrough_at(&self) -> &'static str {
        "/data"
    }

    fn reserved_keys(&self) -> &'static [&'static str] {
        const KEYS: [&str; 11] = [
            "promoCode",
            "status",
            "description",
            "promoStartDate",
            "promoExpiryDate",
            "usage",
            "name",
            "applicationLevel",
            "referencedOfferLabel",
            "productDetails",
            "discount",
        ];
        &KEYS
    }

    fn parse(&self, _code: &PromoCode, response: &VendorResponse<'_>) -> Outcome {
        parse_created(self.kind(), response)
    }

    /// The soft revoke resends the object as created, rebuilt by the create translation (with
    /// the create's passthrough fields) and only `status` changed: §3's pages disagree on
    /// partial bodies, and its client rule is to send the complete `data`. `name` is not sent
    /// (§3: "Do not send"). The id is the one create answered (§"Identifiers": stored, not
    /// recomputed), and must be a v2 one: §6 forbids these calls on v3 objects.
    fn plan_revoke(
        &self,
        target: &RevokeTarget<'_>,
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        let path = v2_object_path(target.vendor_id)?;
        let (request, action) = if delete {
            let request = VendorRequest {
                method: "DELETE",
                path,
                headers: vec![super::accept_json()],
                body: None,
            };
            (request, RevokeAction::Deleted)
        } else {
            // The policy passed this code at create; skip_field only leaves out what Limio v2
            // does not carry, which its create never sends, so the rebuilt object is the sent one.
            let created = translate(self, target.code, OnUnsupported::SkipField, target.passthrough, ctx)?;
            let mut data = created
                .request
                .body
                .and_then(|mut b| b.get_mut("data").map(serde_json::Value::take))
                .expect("the create body has data");
            data["status"] = false.into();
            let mut headers = vec![super::accept_json()];
            headers.extend(super::json_headers());
            let request = VendorRequest {
                method: "PUT",
                path,
                headers,
                body: Some(serde_json::json!({ "data": data })),
            };
            (request, RevokeAction::Deactivated)
        };
        Ok(RevokePlan::Call(RevokeCall::one(
            Translation {
                request,
                warnings: Vec::new(),
            },
            action,
        )))
    }

    /// The update's `200` is success when its `data` is inactive (§3's answer carries "the data
    /// as sent"; §4's advice to read it back anyway is the engine's to take). The delete's `200`
    /// is success with `httpStatusCode` 2xx or absent (§5 client rules); another value is no
    /// documented answer. A 502 is retried, then "state unknown" ("Error bodies").
    fn parse_revoke(&self, call: &RevokeCall, response: &VendorResponse<'_>) -> RevokeOutcome {
        let deleted = call.action == RevokeAction::Deleted;
        classify_revoke(self.kind(), call, response, |json| {
            let Some(v) = json else { return false };
            if deleted {
                serde_json::from_value::<DeletedObject>(v.clone())
                    .is_ok_and(|d| d.http_status_code.is_none_or(|s| (200..300).contains(&s)))
            } else {
                serde_json::from_value::<Updated>(v.clone()).is_ok_and(|u| !u.data.status)
            }
        })
    }

    /// Get-one by the id create answered (§1). A code the ledger holds no Limio id for is not
    /// looked for in the list: its answer's field names are not documented, and §2's client rule
    /// is to read by id until a live answer has shown them.
    fn plan_read(&self, target: &ReadTarget<'_>, _ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        let Some(id) = target.vendor_id else {
            return Ok(ReadPlan::Unreadable {
                reason: "the ledger holds no Limio id for this code, and Limio's list documents neither its fields nor its cursor (lifecycle/limio.md §2)".into(),
            });
        };
        Ok(ReadPlan::Get(VendorRequest {
            method: "GET",
            path: v2_object_path(id)?,
            headers: vec![super::accept_json()],
            body: None,
        }))
    }

    fn parse_read(&self, response: &VendorResponse<'_>) -> ReadOutcome<VendorCode> {
        classify_read(self.kind(), response, |json| v2_object(json?))
    }

    /// §2's answer names neither its array nor its cursor ("field names not confirmed"), and
    /// its summaries carry no `data.status`: the client rule is not to rely on it before a live
    /// answer has shown them, so nothing is sent.
    fn plan_list(&self, _after: Option<&Cursor>, _ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        Ok(ListPlan::Unreadable {
            reason: "Limio documents neither the fields nor the cursor of its promo-code list, nor a status in its summaries (lifecycle/limio.md §2); codes are read one by one by id".into(),
        })
    }

    fn read_back(&self) -> &'static [ReadBack] {
        V2_READ_BACK
    }
}

impl Adapter for LimioV3 {
    fn kind(&self) -> VendorKind {
        VendorKind::LimioV3
    }

    fn support(&self, field: Field) -> Support {
        support(field, Support::Parent)
    }

    fn build(&self, code: &PromoCode, skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        let attached = mapped(ctx, self.kind(), "attached_discount", |m| m.attached_discount.as_ref())?;
        check_parent_grants(code, ctx, self.kind())?;
        let mut warnings = Vec::new();
        let data = V3Data {
            common: common(code, skipped, ctx, &mut warnings)?,
            attached_discount: attached,
        };
        Ok(object(V3, code, data, warnings))
    }

    fn passthrough_at(&self) -> &'static str {
        "/data"
    }

    fn reserved_keys(&self) -> &'static [&'static str] {
        const KEYS: [&str; 8] = [
            "promoCode",
            "status",
            "description",
            "promoStartDate",
            "promoExpiryDate",
            "usage",
            "name",
            "attachedDiscount",
        ];
        &KEYS
    }

    fn parse(&self, _code: &PromoCode, response: &VendorResponse<'_>) -> Outcome {
        parse_created(self.kind(), response)
    }

    /// §6 client rule: revoke on a v3 upstream is unsupported, in both modes.
    fn plan_revoke(
        &self,
        _target: &RevokeTarget<'_>,
        _delete: bool,
        _ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        Ok(RevokePlan::Unsupported {
            reason:
                "Limio documents no call after create for promo codes v3: promo_codes_v3 is not a path_type of its \
                     update or delete, and its delete handles v2 only (lifecycle/limio.md §6)"
                    .into(),
        })
    }

    /// §6 client rule: read-back on a v3 upstream is unsupported.
    fn plan_read(&self, _target: &ReadTarget<'_>, _ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        Ok(ReadPlan::Unreadable {
            reason: V3_UNREADABLE.into(),
        })
    }

    fn plan_list(&self, _after: Option<&Cursor>, _ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        Ok(ListPlan::Unreadable {
            reason: V3_UNREADABLE.into(),
        })
    }
}

const V3_UNREADABLE: &str = "Limio documents no call that reads promo codes v3: promo_codes_v3 is not a path_type of its get and list references (lifecycle/limio.md §6)";
