//! A sync job as the ledger keeps it: its lasting description, the codes still to send, one
//! line of its results, and what staging an item decided.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::code::CodeConflict;
use super::delivery::{Status, TargetError};

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
    pub state: JobState,
    pub campaign: String,
    pub targets: Vec<String>,
    /// Where its codes came from ("json", "csv", "ndjson", "generate", "mirror").
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
    pub definition: Value,
    /// The code was revoked since the job took it: it is not sent.
    pub revoked: bool,
}

/// One line of a job's results.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub seq: i64,
    pub code: String,
    pub upstream: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<promo_adapters::Warning>,
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
}

/// Problems listed in a refused job; the count says how many there were in all.
pub const MAX_REPORTED: usize = 20;

/// Items a job's intake stages per call, at most: the store holds its writer for one slice,
/// and creates get the ledger in between.
pub const INTAKE_SLICE: usize = 256;
