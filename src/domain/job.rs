//! A sync job as the ledger keeps it: its lasting description, the codes still to send, one
//! line of its results, and what staging an item decided.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::code::{CodeConflict, CodeRecord};
use super::delivery::{Status, TargetError};
use super::request::OpKind;

/// The state of a sync job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<JobState> {
        [JobState::Running, JobState::Done, JobState::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A job about to be staged: what it is, before any of its codes.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What the job does to each of its codes on each target: its claims and outcomes live
    /// where that operation's do (a create's deliveries, a revoke's revocations).
    pub operation: OpKind,
    pub campaign: String,
    pub targets: Vec<String>,
    /// Where its codes come from ("json", "csv", "ndjson", "generate", "mirror").
    pub source: String,
    /// Job options (on_unsupported) as given.
    pub options: Value,
}

/// A sync job's lasting description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: i64,
    #[serde(default)]
    pub operation: OpKind,
    pub state: JobState,
    pub campaign: String,
    pub targets: Vec<String>,
    /// Where its codes came from ("json", "csv", "ndjson", "generate", "mirror", and a revoke
    /// job's "json" or "campaign").
    pub source: String,
    pub total: u64,
    #[serde(with = "super::time")]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Job options (on_unsupported) as given.
    #[serde(skip)]
    pub options: Value,
}

/// One code of a job, not yet settled on a target.
#[derive(Debug, Clone)]
pub struct JobWork {
    pub seq: i64,
    pub code_id: i64,
    pub item: WorkItem,
}

/// What a job's worker needs of one code, by the job's operation.
#[derive(Debug, Clone)]
pub enum WorkItem {
    Create {
        definition: Value,
        /// The code was revoked since the job took it: it is not sent.
        revoked: bool,
    },
    /// The code as the ledger holds it (its deliveries: the vendor's ids), which its revoke is
    /// planned from.
    Revoke(Box<CodeRecord>),
}

/// One line of a job's results.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub seq: i64,
    pub code: String,
    pub upstream: String,
    pub status: Status,
    /// What a revoke did to the code (a revoke job's lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<promo_adapters::operation::RevokeAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<promo_adapters::Warning>,
}

impl JobResult {
    /// A line from its row (a delivery, a revocation) and the result recorded there.
    pub fn from_row(
        seq: i64,
        code: String,
        upstream: String,
        status: Status,
        vendor_id: Option<String>,
        attempts: u32,
        result: Option<crate::domain::delivery::TargetResult>,
    ) -> Self {
        let (action, error, warnings) = match result {
            Some(r) => (r.action, r.error, r.warnings),
            None => (None, None, Vec::new()),
        };
        Self {
            seq,
            code,
            upstream,
            status,
            action,
            vendor_id,
            attempts,
            error,
            warnings,
        }
    }

    /// A revoke job's line whose revocation another revoke (a request, another job) settled or
    /// is settling: the job made no call for it, which the line says.
    pub fn revoked_elsewhere(mut self, job_id: i64, claimed_by: Option<i64>) -> Self {
        if claimed_by != Some(job_id) {
            self.attempts = 0;
            let by = claimed_by.map_or_else(|| "a revoke request".to_owned(), |j| format!("sync job {j}"));
            self.warnings.push(promo_adapters::Warning {
                field: "code".into(),
                message: format!(
                    "the revocation at {} is {by}'s, not this job's: this job sends nothing there",
                    self.upstream
                ),
            });
        }
        self
    }
}

/// How a job's items are checked as they are staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageAs {
    /// Codes given by the client: each may already be in the campaign (the same code, or one
    /// no vendor holds, which it redefines) but not clash with another.
    Given,
    /// Freshly drawn codes: each must be new to the campaign and to every staged job.
    Fresh,
}

/// What staging decided for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// Reserved for the job.
    Accepted,
    /// The item clashes with a code the ledger holds or another job has staged, or repeats one
    /// of the job's earlier items.
    Refused(CodeConflict),
    /// A fresh code that is taken: draw another.
    Taken,
    /// A revoke job's code that the campaign does not hold.
    Unknown,
}

/// Problems listed in a refused job; the count says how many there were in all.
pub const MAX_REPORTED: usize = 20;

/// Items a job's intake stages per call, at most: the store holds its writer for one slice,
/// and creates get the ledger in between.
pub const INTAKE_SLICE: usize = 256;
