//! A code's identity and the clashes the ledger refuses: plain data every store returns the
//! same way, so that "code-conflict" means one thing whatever the backend.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::delivery::{Status, TargetResult};

/// Why the ledger will not take a code: the `conflict` member of a 409 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CodeConflict {
    /// The campaign holds the same code in another case or compatibility form (`SPRING20`
    /// beside `spring20`, `KEY` beside `\u{212A}EY` with the Kelvin sign).
    OtherCase { existing: String },
    /// The campaign holds this code with a different definition; codes are immutable.
    Redefined { existing: String },
    /// The same code twice in one job.
    Repeated { existing: String },
    /// Another campaign (or a code of no campaign) holds the code, in any case, at one or more
    /// of the targets: a vendor keeps one code per name, so it cannot be this campaign's there.
    OtherCampaign { held_by: Vec<Holder> },
    /// The campaign's code was revoked: it is never delivered again, to any target.
    Revoked {
        existing: String,
        #[serde(with = "super::time")]
        revoked_at: DateTime<Utc>,
    },
}

/// Another campaign's hold on a code: the code as it spelt it, and the upstreams where that
/// code is delivered or being delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// `None` for a code of no campaign.
    pub campaign: Option<String>,
    pub code: String,
    pub upstreams: Vec<String>,
}

impl std::fmt::Display for CodeConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodeConflict::OtherCase { existing } => write!(
                f,
                "the campaign already holds `{existing}`; codes are compared without regard to case or Unicode compatibility forms (NFKC and case folding), since several vendors treat them as one"
            ),
            CodeConflict::Redefined { existing } => write!(
                f,
                "the campaign already holds `{existing}` with a different definition; a code cannot change once accepted"
            ),
            CodeConflict::Repeated { existing } => write!(f, "`{existing}` appears earlier in this job"),
            CodeConflict::Revoked { existing, revoked_at } => write!(
                f,
                "`{existing}` was revoked at {}; a revoked code is never sent to any target again (choose another code)",
                super::time::format(revoked_at)
            ),
            CodeConflict::OtherCampaign { held_by } => {
                for (i, h) in held_by.iter().enumerate() {
                    let owner = match &h.campaign {
                        Some(c) => format!("campaign `{c}`"),
                        None => "no campaign".to_owned(),
                    };
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}`{}` of {owner} is held at {}", h.code, h.upstreams.join(", "))?;
                }
                write!(
                    f,
                    "; a vendor keeps one code per name whatever the case, so this campaign cannot hold it there too (choose another code, or other targets)"
                )
            }
        }
    }
}

/// A code as the ledger keys it: unique per campaign regardless of case, and immutable once a
/// vendor holds it (its definition is what every target was or will be sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Empty when the code belongs to no campaign.
    pub campaign: String,
    pub code: String,
    /// The unified code without delivery instructions (targets, passthrough, on_unsupported),
    /// serialised with sorted keys so that equal definitions compare equal as text.
    pub json: String,
}

/// Codes are compared as vendors may compare them: without regard to case or Unicode
/// compatibility forms. The key has one home, in the unified model.
pub use promo_adapters::model::code_key;

impl Definition {
    /// The instructions that say where and how to deliver, not what the code is.
    const DELIVERY_KEYS: [&'static str; 3] = ["targets", "passthrough", "on_unsupported"];

    pub fn of(body: &serde_json::Value, campaign: Option<&str>, code: &str) -> Self {
        let mut def = body.clone();
        if let Some(obj) = def.as_object_mut() {
            for key in Self::DELIVERY_KEYS {
                obj.remove(key);
            }
        }
        Self {
            campaign: campaign.unwrap_or_default().to_owned(),
            code: code.to_owned(),
            json: def.to_string(),
        }
    }

    /// The code's identity within its campaign.
    pub fn key(&self) -> String {
        code_key(&self.code)
    }

    /// How this definition differs from the one a campaign already holds under its key: `None`
    /// when they are the same code, else the conflict it would be once a vendor holds that
    /// code. Where no vendor holds it (every target refused it), the code is simply redefined;
    /// see [`decide`].
    pub fn differs_from(&self, code: &str, json: &str) -> Option<CodeConflict> {
        if code != self.code {
            Some(CodeConflict::OtherCase {
                existing: code.to_owned(),
            })
        } else if json != self.json {
            Some(CodeConflict::Redefined {
                existing: code.to_owned(),
            })
        } else {
            None
        }
    }
}

/// A code the campaign already holds under the key of the one asked for, as a store read it.
#[derive(Debug, Clone)]
pub struct Known<Id> {
    pub id: Id,
    pub code: String,
    pub json: String,
    /// A vendor holds it, or a delivery of it is under way, at some target.
    pub held: bool,
}

/// What a store does with a code definition, decided the same way by every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<Id> {
    /// A new code: insert it.
    Add,
    /// The campaign holds this very code.
    Keep(Id),
    /// The campaign holds the key under another spelling or definition, but no vendor has it:
    /// the new one replaces it.
    Redefine(Id),
    /// A vendor holds the other spelling or definition: codes are immutable once delivered.
    Refuse(CodeConflict),
}

/// Whether a definition may join its campaign, given what the campaign holds under its key.
pub fn decide<Id>(known: Option<Known<Id>>, def: &Definition) -> Decision<Id> {
    let Some(known) = known else { return Decision::Add };
    match def.differs_from(&known.code, &known.json) {
        None => Decision::Keep(known.id),
        Some(conflict) if known.held => Decision::Refuse(conflict),
        Some(_) => Decision::Redefine(known.id),
    }
}

/// One hold of another campaign's code (or a staged reservation of one) at an upstream, as a
/// store read it: `(campaign, code, upstream)`, in the order holders are to be listed.
pub type HoldRow = (String, String, String);

/// Other campaigns' holds on a code at any of `targets`, grouped by holder: a vendor keeps one
/// code per name, so another campaign's code there would be answered "already exists" with that
/// campaign's discount. `None` when no target is held.
pub fn held_elsewhere(rows: impl IntoIterator<Item = HoldRow>, targets: &[String]) -> Option<CodeConflict> {
    let mut held_by: Vec<Holder> = Vec::new();
    for (campaign, code, upstream) in rows {
        if !targets.contains(&upstream) {
            continue;
        }
        let campaign = (!campaign.is_empty()).then_some(campaign);
        match held_by.last_mut() {
            Some(h) if h.campaign == campaign && h.code == code => {
                if !h.upstreams.contains(&upstream) {
                    h.upstreams.push(upstream)
                }
            }
            _ => held_by.push(Holder {
                campaign,
                code,
                upstreams: vec![upstream],
            }),
        }
    }
    (!held_by.is_empty()).then_some(CodeConflict::OtherCampaign { held_by })
}

/// The result a retry leaves on a delivery it does not reopen, because another campaign's code
/// of the same name (`code` of `campaign`, empty for none) has reached `upstream` since it
/// failed: its last result (or its bare `status`) with an error that says so. Without it the
/// delivery would keep its old error and a retry would silently pass it over; its status stays
/// as it was (the code is not on the vendor for this campaign).
pub fn held_since(
    previous: Option<TargetResult>,
    status: Status,
    campaign: &str,
    code: &str,
    upstream: &str,
) -> TargetResult {
    let held_by = if campaign.is_empty() {
        format!("`{code}` (of no campaign)")
    } else {
        format!("`{code}` of campaign `{campaign}`")
    };
    previous
        .unwrap_or_else(|| TargetResult::new(upstream, None, status))
        .with_error(
            super::delivery::ErrorKind::CodeConflict,
            format!(
                "not sent again: {held_by} has reached {upstream} since this delivery failed, and a vendor keeps one code per name whatever the case"
            ),
        )
}

/// A code and its state on every target, as `GET /v1/promo-codes/{code}` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CodeRecord {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub definition: serde_json::Value,
    #[serde(with = "super::time")]
    pub created_at: DateTime<Utc>,
    pub deliveries: BTreeMap<String, DeliveryRecord>,
    /// When the code was first revoked: from then on nothing delivers it again.
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Each target's revocation, by upstream (the same record as a delivery's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, DeliveryRecord>,
}

impl CodeRecord {
    /// Whether every one of `targets` holds the code already: a mirror to them has nothing to
    /// send for it.
    pub fn on_every(&self, targets: &[String]) -> bool {
        targets
            .iter()
            .all(|t| self.deliveries.get(t).is_some_and(|d| d.status.is_delivered()))
    }

    /// Whether a mirror to `targets` has anything to send for this code: not when it is on
    /// every one already, and never once it was revoked.
    pub fn to_mirror(&self, targets: &[String]) -> bool {
        self.revoked_at.is_none() && !self.on_every(targets)
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DeliveryRecord {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Calls made to the vendor for this code, over every request and job.
    pub attempts: u32,
    #[serde(with = "super::time")]
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TargetResult>,
    /// The sync job that last claimed this delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
}

/// A filter for listing codes.
#[derive(Debug, Clone, Default)]
pub struct CodeFilter {
    pub campaign: Option<String>,
    pub upstream: Option<String>,
    pub status: Option<Status>,
    /// Codes after this ledger id.
    pub after: i64,
    pub limit: usize,
}
