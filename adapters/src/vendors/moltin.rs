//! Moltin (Elastic Path): `POST /v2/promotions/:id/codes`
//! (shared/vendor-docs/moltin-create-promotion-codes.md).
//!
//! Codes attach to a promotion (`promotion_id`, from the campaign mapping) that grants the
//! discount and holds the dates. One call creates many codes; [`Moltin::build_batch`] is what
//! the sync work uses, and a single create is a batch of one.

use serde::{Deserialize, Serialize};

use crate::adapter::{
    check_parent_grants, classify, mapped, Adapter, BuildContext, BuildError, Outcome, Translation, VendorKind,
    VendorRequest, VendorResponse,
};
use crate::model::PromoCode;
use crate::policy::{Field, Support};
use crate::settings::Vendor;

pub struct Moltin;

/// `kind = "moltin"`: `timezone` only.
pub const VENDOR: Vendor = Vendor {
    kind: "moltin",
    name: "Moltin",
    takes: &["timezone"],
    configure: |_| Ok(VendorKind::Moltin),
};

/// Codes per call. Moltin documents no limit; this keeps one call's failure small.
pub const BATCH_SIZE: usize = 50;

#[derive(Debug, Serialize)]
struct CreateCodes<'a> {
    data: CodesData<'a>,
}

#[derive(Debug, Serialize)]
struct CodesData<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    codes: Vec<Code<'a>>,
}

#[derive(Debug, Serialize)]
struct Code<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uses: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

/// The documented 201 body is the promotion the codes joined.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // read for shape
struct Created {
    data: CreatedPromotion,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // read for shape
struct CreatedPromotion {
    id: String,
}

impl Adapter for Moltin {
    fn kind(&self) -> VendorKind {
        VendorKind::Moltin
    }

    fn support(&self, field: Field) -> Support {
        match field {
            Field::PercentOff | Field::AmountOff | Field::Duration => Support::Parent,
            Field::MaxRedemptions | Field::Customer => Support::Carried,
            _ => Support::NotCarried,
        }
    }

    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn build(&self, code: &PromoCode, _skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        self.build_batch(&[code], ctx)
    }

    /// Builds one call for up to [`BATCH_SIZE`] codes of the same campaign. Each code must
    /// already have passed [`crate::policy::check`] for Moltin: this only reads the fields Moltin
    /// carries, so a code with an uncarried restriction would lose it here.
    fn build_batch(&self, codes: &[&PromoCode], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        if codes.is_empty() || codes.len() > BATCH_SIZE {
            return Err(BuildError::Invalid {
                field: "codes".into(),
                rule: format!("a Moltin batch holds 1 to {BATCH_SIZE} codes, got {}", codes.len()),
            });
        }
        let promotion_id = mapped(ctx, self.kind(), "promotion_id", |m| m.promotion_id.as_ref())?;
        for code in codes {
            check_parent_grants(code, ctx, self.kind())?;
        }
        let body = CreateCodes {
            data: CodesData {
                kind: "promotion_codes",
                codes: codes
                    .iter()
                    .map(|c| Code {
                        code: &c.code,
                        uses: c.max_redemptions,
                        user: c.customer.as_ref().map(|p| p.id.as_str()),
                    })
                    .collect(),
            },
        };
        Ok(Translation {
            request: VendorRequest {
                method: "POST",
                path: format!("/v2/promotions/{}/codes", super::path_segment(promotion_id)),
                headers: super::json_headers(),
                body: serde_json::to_value(body).expect("serializable"),
            },
            warnings: Vec::new(),
        })
    }

    fn passthrough_at(&self) -> &'static str {
        "/data/codes"
    }

    fn reserved_keys(&self) -> &'static [&'static str] {
        &["code", "uses", "user"]
    }

    fn parse(&self, code: &PromoCode, response: &VendorResponse<'_>) -> Outcome {
        // Moltin answers with the promotion, not the code: within a promotion a code is its own
        // identifier, so the code is the vendor id.
        classify(self.kind(), response, |v| {
            serde_json::from_value::<Created>(v.clone())
                .ok()
                .map(|_| code.code.clone())
        })
    }
}
