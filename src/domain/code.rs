//! A code's identity and the clashes the ledger refuses: plain data every store returns the
//! same way, so that "code-conflict" means one thing whatever the backend.

use serde::Serialize;

/// Why the ledger will not take a code: the `conflict` member of a 409 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
}

/// Another campaign's hold on a code: the code as it spelt it, and the upstreams where that
/// code is delivered or being delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
