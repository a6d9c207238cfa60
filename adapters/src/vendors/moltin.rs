//! Moltin (Elastic Path): `POST /v2/promotions/:id/codes`
//! (shared/vendor-docs/moltin-create-promotion-codes.md).
//!
//! Codes attach to a promotion (`promotion_id`, from the campaign mapping) that grants the
//! discount and holds the dates. One call creates many codes; [`Moltin::build_batch`] is what
//! the sync work uses, and a single create is a batch of one.
//!
//! Revoke (shared/vendor-docs/lifecycle/moltin.md): a hard delete, one code
//! (`DELETE /v2/promotions/:promotionID/codes/:code`, §6) or many
//! (`DELETE /v2/promotions/:promotionID/codes` with a body, §6b). Within a promotion the code
//! string is the key (the create's vendor id). No per-code soft revoke exists (§5), and the
//! promotion-wide `enabled` is never used for one code.

use serde::{Deserialize, Serialize};

use crate::adapter::{
    check_parent_grants, classify, mapped, Adapter, BuildContext, BuildError, Outcome, Translation, VendorKind,
    VendorRequest, VendorResponse,
};
use crate::model::PromoCode;
use crate::operation::{classify_revoke, Missing, RevokeAction, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
use crate::policy::{Field, Support};
use crate::read::{
    classify_read, count, Cursor, ListPlan, Liveness, Page, ReadBack, ReadOutcome, ReadPlan, ReadTarget, Slot,
    VendorCode,
};
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

/// §6b's body: the same envelope as create's, each code by its string alone.
#[derive(Debug, Serialize)]
struct DeleteCodes<'a> {
    data: DeleteCodesData<'a>,
}

#[derive(Debug, Serialize)]
struct DeleteCodesData<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    codes: Vec<CodeRef<'a>>,
}

#[derive(Debug, Serialize)]
struct CodeRef<'a> {
    code: &'a str,
}

#[derive(Debug, Serialize)]
struct Code<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uses: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

/// The fields a promotion-code record gives back (§"The promotion-code record"): the create's
/// `uses` is the cap, which the record calls `max_uses` (its `uses` counts what is left).
const READ_BACK: &[ReadBack] = &[
    ReadBack {
        field: Field::MaxRedemptions,
        sent: Slot::at("/data/codes/0/uses"),
        read: Slot::at("/max_uses"),
    },
    ReadBack {
        field: Field::Customer,
        sent: Slot::at("/data/codes/0/user"),
        read: Slot::at("/user"),
    },
];

/// The page size §2's client rule sends, the platform's largest.
const LIST_LIMIT: u64 = 100;

/// The offset beyond which §2 warns that the platform's soft cap may cut the walk short.
const OFFSET_CAP: u64 = 10_000;

/// One record of the code list. Present is all the liveness Moltin shows per code (§"Reconcile
/// checklist": revoked is absent); uses so far are `max_uses − uses`.
fn code_record(record: &serde_json::Value) -> Option<VendorCode> {
    let code = record.get("code")?.as_str()?.to_owned();
    let (max, left) = (count(record.get("max_uses")), count(record.get("uses")));
    let warnings = (max.is_none())
        .then(|| crate::adapter::Warning {
            field: "max_redemptions".into(),
            message: "Moltin gives no max_uses for this code (codes created before 2023-04-27 carry only uses): its cap is unknown".into(),
        })
        .into_iter()
        .collect();
    Some(VendorCode {
        vendor_id: Some(code.clone()),
        code,
        liveness: Liveness::Active,
        redemptions: max.zip(left).map(|(max, left)| max.saturating_sub(left)),
        object: record.clone(),
        warnings,
    })
}

/// The list's records, in either shape §2 shows: a flat `data[]` of codes, or codes nested in
/// `data[].data.codes[]`.
fn listed_codes(json: &serde_json::Value) -> Option<Vec<VendorCode>> {
    let mut codes = Vec::new();
    for item in json.get("data")?.as_array()? {
        if item.get("code").is_some() {
            codes.push(code_record(item)?);
        } else {
            for record in item.pointer("/data/codes")?.as_array()? {
                codes.push(code_record(record)?);
            }
        }
    }
    Some(codes)
}

/// A list cursor: the offset to ask for, and the first code of the page before it, so that a
/// server that ignores paging (§2: "the second page returns exactly the same codes") is noticed.
fn list_cursor(offset: u64, first: &str) -> Cursor {
    Cursor(format!("{offset} {first}"))
}

fn read_cursor(cursor: Option<&Cursor>) -> (u64, &str) {
    cursor
        .and_then(|c| {
            let (offset, first) = c.0.split_once(' ')?;
            Some((offset.parse().ok()?, first))
        })
        .unwrap_or((0, ""))
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
                body: Some(serde_json::to_value(body).expect("serializable")),
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

    /// Codes one bulk delete takes. §6b leaves the largest batch undocumented; this is the
    /// create's batch, so that one refused call stays small and halving reaches one code soon.
    fn revoke_batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn plan_revoke(
        &self,
        target: &RevokeTarget<'_>,
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        if !delete {
            return Ok(soft_unsupported());
        }
        let promotion = mapped(ctx, self.kind(), "promotion_id", |m| m.promotion_id.as_ref())?;
        // §6: "the code string to delete; percent-encode it".
        let code = super::id_segment(self.kind(), target.vendor_id)?;
        let request = VendorRequest {
            method: "DELETE",
            path: format!("/v2/promotions/{}/codes/{code}", super::path_segment(promotion)),
            headers: vec![super::accept_json()],
            body: None,
        };
        Ok(RevokePlan::Call(RevokeCall::one(
            Translation {
                request,
                warnings: Vec::new(),
            },
            RevokeAction::Deleted,
        )))
    }

    /// §6b for two codes or more; one code takes §6's single delete, whose answers are
    /// documented for that code alone (the bulk call's, for a code that does not exist, are not).
    fn plan_revoke_batch(
        &self,
        targets: &[RevokeTarget<'_>],
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        if let [one] = targets {
            return self.plan_revoke(one, delete, ctx);
        }
        // §6b: "Never send this request unless data.codes is non-empty".
        if targets.is_empty() || targets.len() > BATCH_SIZE {
            return Err(BuildError::Invalid {
                field: "codes".into(),
                rule: format!(
                    "a Moltin bulk delete holds 1 to {BATCH_SIZE} codes, got {}",
                    targets.len()
                ),
            });
        }
        if !delete {
            return Ok(soft_unsupported());
        }
        let promotion = mapped(ctx, self.kind(), "promotion_id", |m| m.promotion_id.as_ref())?;
        for t in targets {
            if t.vendor_id.is_empty() {
                return Err(BuildError::Invalid {
                    field: "vendor_id".into(),
                    rule: format!("Moltin's id for the code `{}` is empty", t.code.code),
                });
            }
        }
        let body = DeleteCodes {
            data: DeleteCodesData {
                kind: "promotion_codes",
                codes: targets.iter().map(|t| CodeRef { code: t.vendor_id }).collect(),
            },
        };
        let mut headers = vec![super::accept_json()];
        headers.extend(super::json_headers());
        let request = VendorRequest {
            method: "DELETE",
            path: format!("/v2/promotions/{}/codes", super::path_segment(promotion)),
            headers,
            body: Some(serde_json::to_value(body).expect("serializable")),
        };
        Ok(RevokePlan::Call(RevokeCall {
            translation: Translation {
                request,
                warnings: Vec::new(),
            },
            action: RevokeAction::Deleted,
            codes: targets.len().try_into().expect("checked non-empty"),
        }))
    }

    /// `204 No Content` is success, for one code and for a batch alike: §6b's advice to list
    /// the promotion after a bulk `204` is a read-back, the engine's to make. A 404 whose
    /// `detail` is §6's `promotion not found` says the parent is missing (§6 client rules). Any other 404
    /// answers for the one code of a single delete; for a batch it is undocumented which codes
    /// it means, so it is a refusal, which the engine halves down to single deletes.
    fn parse_revoke(&self, call: &RevokeCall, response: &VendorResponse<'_>) -> RevokeOutcome {
        let outcome = classify_revoke(self.kind(), call, response, |_| {
            response.status == 204 && response.body.iter().all(u8::is_ascii_whitespace)
        });
        match outcome {
            RevokeOutcome::NotFound { message, .. } if message.to_ascii_lowercase().contains("promotion not found") => {
                RevokeOutcome::NotFound {
                    missing: Missing::Parent,
                    message,
                }
            }
            RevokeOutcome::NotFound { message, .. } if call.codes.get() > 1 => {
                RevokeOutcome::Rejected { status: 404, message }
            }
            other => other,
        }
    }

    /// No get-one exists (§1): the promotion's list is walked and the code picked out.
    fn plan_read(&self, _target: &ReadTarget<'_>, _ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        Ok(ReadPlan::Scan)
    }

    /// `page[limit]=100`, `page[offset]` in steps of 100 (§2's client rule).
    fn plan_list(&self, after: Option<&Cursor>, ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        let promotion = mapped(ctx, self.kind(), "promotion_id", |m| m.promotion_id.as_ref())?;
        let (offset, _) = read_cursor(after);
        Ok(ListPlan::Page(VendorRequest {
            method: "GET",
            path: format!(
                "/v2/promotions/{}/codes?page[limit]={LIST_LIMIT}&page[offset]={offset}",
                super::path_segment(promotion)
            ),
            headers: vec![super::accept_json()],
            body: None,
        }))
    }

    /// Ends at a short page or at `meta.results.total`; a page that repeats the one before, or
    /// an offset past the platform's soft cap, ends it with a warning (§2's client rules).
    fn parse_list(&self, after: Option<&Cursor>, response: &VendorResponse<'_>) -> ReadOutcome<Page> {
        let (offset, previous_first) = read_cursor(after);
        classify_read(self.kind(), response, |json| {
            let json = json?;
            let codes = listed_codes(json)?;
            let first = codes.first().map_or("", |c| c.code.as_str());
            if offset > 0 && !first.is_empty() && first == previous_first {
                let message = "Moltin answered the same codes for the next page: it ignores paging on this path, so the listing may be capped";
                return Some(Page {
                    codes: Vec::new(),
                    next: None,
                    warnings: vec![crate::adapter::Warning {
                        field: "list".into(),
                        message: message.into(),
                    }],
                });
            }
            let mut warnings = Vec::new();
            let seen = offset + codes.len() as u64;
            let total = count(json.pointer("/meta/results/total"));
            let next = if (codes.len() as u64) < LIST_LIMIT || total.is_some_and(|t| seen >= t) {
                None
            } else if seen >= OFFSET_CAP {
                warnings.push(crate::adapter::Warning {
                    field: "list".into(),
                    message: format!("the walk stopped at {OFFSET_CAP} codes, where Elastic Path's offset cap may cut a list short; codes beyond it were not read"),
                });
                None
            } else {
                Some(list_cursor(seen, first))
            };
            Some(Page { codes, next, warnings })
        })
    }

    fn read_back(&self) -> &'static [ReadBack] {
        READ_BACK
    }
}

/// §5: the only switch is the promotion's `enabled`, which would turn off every code on it.
fn soft_unsupported() -> RevokePlan {
    RevokePlan::Unsupported {
        reason: "Moltin documents no per-code switch-off (lifecycle/moltin.md §5), and its promotion-wide `enabled` \
                 would switch off every code of the promotion; its only revoke deletes the code for good: ask with \
                 delete: true"
            .into(),
    }
}
