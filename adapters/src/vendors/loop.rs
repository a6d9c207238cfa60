//! Loop: `POST /v1/admin/promos` (shared/vendor-docs/loop-create-promo.md).
//!
//! Loop's code carries its own discount (no parent object), an expiry instant and a redemption
//! cap, and nothing else: no start date, no first-order rule, no minimum order, no customer.
//!
//! Revoke: unsupported. The payments API documents no update, deactivate or delete of a promo
//! (shared/vendor-docs/lifecycle/loop.md §4).

use serde::{Deserialize, Serialize};

use crate::adapter::{
    account_amount, classify, Adapter, BareAmount, BuildContext, BuildError, Outcome, Translation, VendorKind,
    VendorRequest, VendorResponse, Warning,
};
use crate::dates::utc_rfc3339;
use crate::model::{Discount, PromoCode};
use crate::operation::{RevokePlan, RevokeTarget};
use crate::policy::{Field, Support};
use crate::read::{
    classify_read, count, Cursor, ListPlan, Liveness, Page, ReadBack, ReadOutcome, ReadPlan, ReadTarget, Slot,
    Unlisted, VendorCode,
};
use crate::settings::Vendor;

pub struct Loop;

/// `kind = "loop"`: `currency`, the account's, in which Loop reads a bare `amount_off`; and
/// `timezone`.
pub const VENDOR: Vendor = Vendor {
    kind: "loop",
    name: "Loop",
    takes: &["currency", "timezone"],
    configure: |_| Ok(VendorKind::Loop),
};

/// The fields a listed promo gives back (§2; the reconcile checklist): the create's
/// `valid_until` comes back as `expires_at`.
const READ_BACK: &[ReadBack] = &[
    ReadBack {
        field: Field::PercentOff,
        sent: Slot::at("/percent_off"),
        read: Slot::at("/percent_off"),
    },
    ReadBack {
        field: Field::AmountOff,
        sent: Slot::at("/amount_off"),
        read: Slot::at("/amount_off"),
    },
    ReadBack {
        field: Field::ExpiresAt,
        sent: Slot::at("/valid_until"),
        read: Slot::at("/expires_at"),
    },
    ReadBack {
        field: Field::MaxRedemptions,
        sent: Slot::at("/max_redemptions"),
        read: Slot::at("/max_redemptions"),
    },
];

/// §2's client rule: absence from the list is "not listed as active", never "revoked" or
/// "deleted".
const UNLISTED: &str = "Loop lists only its active codes (lifecycle/loop.md §2): this one is not listed as active, which may mean inactive, expired, deleted in Stripe or the Loop admin, or cut off by an undocumented size limit";

/// A listed promo. `active: false` is the only positive evidence of revocation Loop offers (§2).
fn promo(object: &serde_json::Value) -> Option<VendorCode> {
    Some(VendorCode {
        code: object.get("code")?.as_str()?.to_owned(),
        vendor_id: Some(object.get("id")?.as_str()?.to_owned()),
        liveness: if object.get("active")?.as_bool()? {
            Liveness::Active
        } else {
            Liveness::Revoked
        },
        redemptions: count(object.get("times_redeemed")),
        object: object.clone(),
        warnings: Vec::new(),
    })
}

/// Loop's documented `code` limit.
pub const MAX_CODE_LEN: usize = 50;

/// `amount_off` is a bare integer in the Loop account's currency.
const AMOUNT_OFF: BareAmount = BareAmount {
    vendor: VendorKind::Loop,
    field: "discount.currency",
    vendor_field: "amount_off",
    account: "account",
    what: "amount discounts",
};

/// The request body, field for field as documented. Absent optionals are left out, not null.
#[derive(Debug, Serialize)]
struct CreatePromo<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent_off: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_off: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_redemptions: Option<u32>,
}

/// The documented 201 body; only the id is needed, the rest is checked for shape.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // read for shape, so a body that is not Loop's is not taken for success
struct Created {
    id: String,
    code: String,
    active: bool,
}

impl Adapter for Loop {
    fn kind(&self) -> VendorKind {
        VendorKind::Loop
    }

    fn account_currency_amounts(&self) -> Option<&'static str> {
        Some("amount_off")
    }

    fn support(&self, field: Field) -> Support {
        match field {
            // amount_off is exact in minor units, and only sent in the currency the upstream
            // declares for the Loop account (`account_amount`); any other is refused as invalid.
            Field::PercentOff | Field::AmountOff | Field::ExpiresAt | Field::MaxRedemptions => Support::Carried,
            _ => Support::NotCarried,
        }
    }

    fn build(&self, code: &PromoCode, _skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        let len = code.code.chars().count();
        if len > MAX_CODE_LEN {
            return Err(BuildError::Invalid {
                field: "code".into(),
                rule: format!("Loop takes codes of 1 to {MAX_CODE_LEN} characters, this one has {len}"),
            });
        }
        let (percent_off, amount_off) = match code.discount {
            Discount::Percent(p) => {
                if p.hundredths() < 100 {
                    return Err(BuildError::Invalid {
                        field: "discount.percent_off".into(),
                        rule: format!("Loop takes percent_off from 1 to 100, got {p}"),
                    });
                }
                (Some(p.to_json(2).0), None)
            }
            Discount::Amount(m) => (None, Some(account_amount(ctx, &AMOUNT_OFF, m)?.amount)),
        };
        let body = CreatePromo {
            code: &code.code,
            percent_off,
            amount_off,
            valid_until: code.expires_at.map(utc_rfc3339),
            max_redemptions: code.max_redemptions,
        };
        Ok(Translation {
            request: VendorRequest {
                method: "POST",
                path: "/v1/admin/promos".into(),
                headers: super::json_headers(),
                body: Some(serde_json::to_value(body).expect("serializable")),
            },
            warnings: Vec::new(),
        })
    }

    fn reserved_keys(&self) -> &'static [&'static str] {
        &["code", "percent_off", "amount_off", "valid_until", "max_redemptions"]
    }

    fn parse(&self, _code: &PromoCode, response: &VendorResponse<'_>) -> Outcome {
        classify(self.kind(), response, |v| {
            serde_json::from_value::<Created>(v.clone()).ok().map(|c| c.id)
        })
    }

    /// §4 client rule: every revoke on Loop is unsupported, soft or hard.
    fn plan_revoke(
        &self,
        _target: &RevokeTarget<'_>,
        _delete: bool,
        _ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        Ok(RevokePlan::Unsupported {
            reason: "Loop's payments API documents no update, deactivate or delete of a promo (lifecycle/loop.md §4); \
                     switching a code off is outside this API"
                .into(),
        })
    }

    /// No get-one (§1): the list is read and the promo matched by the id create returned.
    fn plan_read(&self, _target: &ReadTarget<'_>, _ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        Ok(ReadPlan::Scan)
    }

    /// `GET /v1/admin/promos`, one page: no paging is documented (§2).
    fn plan_list(&self, _after: Option<&Cursor>, _ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        Ok(ListPlan::Page(VendorRequest {
            method: "GET",
            path: "/v1/admin/promos".into(),
            headers: Vec::new(),
            body: None,
        }))
    }

    /// The one page; a suspiciously round number of entries may be a cut-off list (§2).
    fn parse_list(&self, _after: Option<&Cursor>, response: &VendorResponse<'_>) -> ReadOutcome<Page> {
        classify_read(self.kind(), response, |json| {
            let codes = json?
                .get("promos")?
                .as_array()?
                .iter()
                .map(promo)
                .collect::<Option<Vec<_>>>()?;
            let warnings = (!codes.is_empty() && codes.len() % 100 == 0)
                .then(|| Warning {
                    field: "list".into(),
                    message: format!(
                        "Loop listed exactly {} promos and documents no paging: the list may be cut off",
                        codes.len()
                    ),
                })
                .into_iter()
                .collect();
            Some(Page {
                codes,
                next: None,
                warnings,
            })
        })
    }

    fn unlisted(&self) -> Unlisted {
        Unlisted::NotActive(UNLISTED)
    }

    fn read_back(&self) -> &'static [ReadBack] {
        READ_BACK
    }
}
