//! A sync job's intake: its codes read (from a body, an upload, a generator or the ledger
//! itself), validated, and staged in the store slice by slice; the job is committed only when
//! every item passed, else discarded with every fault listed (up to [`MAX_REPORTED`]). The store
//! never holds its writer for more than a slice, so creates go on during a long intake.
//!
//! The intake runs on a blocking thread (an upload is read from its spool file as it goes, so
//! a file of any length is never held in memory) and waits on the store's async calls there.

use promo_adapters::Problems;
use tokio::runtime::Handle;

use crate::domain::code::{CodeFilter, CodeRecord, Definition};
use crate::domain::error::DomainError;
use crate::domain::job::{NewJob, StageAs, Staged, INTAKE_SLICE, MAX_REPORTED};
use crate::engine::ledger_error;
use crate::ports::{Store, StoreError};

/// Where a job's codes come from, as the intake reads them.
pub enum Codes<'a> {
    /// Definitions, one per code, each already validated, with where the item is (`line 4`,
    /// `codes[3]`) for problems; an `Err` is an item that failed.
    Items(Box<dyn Iterator<Item = (String, Result<Definition, String>)> + Send + 'a>),
    /// `count` fresh codes from `next`, each unique against the ledger (drawn again on a clash).
    Generate {
        count: u64,
        /// How many distinct codes the pattern can make, for the message when it runs dry.
        capacity: u64,
        next: Box<dyn FnMut() -> Definition + Send + 'a>,
    },
    /// Every code the ledger holds for the job's campaign that is missing from one of
    /// `targets` (a code already on every one has nothing to mirror).
    Mirror { targets: Vec<String> },
    /// A revoke job's codes by name, each with where it is (`codes[3]`); `None` for every code
    /// the campaign holds.
    Revoke(Option<Vec<(String, String)>>),
}

/// Taken codes a generator may draw in a row before the job is refused.
const MAX_TAKEN_IN_A_ROW: u32 = 100;

/// Why staging stopped: items at fault, or the store.
enum Stop {
    Refused,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

/// The faults found so far: the first [`MAX_REPORTED`] and how many in all.
#[derive(Default)]
struct Faults {
    listed: Vec<(String, String)>,
    count: usize,
}

impl Faults {
    fn push(&mut self, at: String, problem: String) {
        self.count += 1;
        if self.listed.len() < MAX_REPORTED {
            self.listed.push((at, problem));
        }
    }

    fn into_error(self) -> DomainError {
        let mut p = Problems::default();
        for (at, rule) in self.listed {
            p.push(at, rule);
        }
        if self.count > MAX_REPORTED {
            p.push(
                "codes",
                format!(
                    "{} items are at fault in all; the first {MAX_REPORTED} are listed",
                    self.count
                ),
            );
        }
        DomainError::Invalid(p)
    }
}

/// Writes a job and all its codes, or nothing: the job's id once it runs. Called on a blocking
/// thread of the runtime `rt`.
pub fn take_in(rt: &Handle, store: &dyn Store, job: NewJob, codes: Codes<'_>) -> Result<i64, DomainError> {
    let campaign = job.campaign.clone();
    let id = rt.block_on(store.begin_job(job)).map_err(ledger_error)?;
    let mut faults = Faults::default();
    // A mirror of a campaign with no codes has nothing to do, which is no fault of the asker's:
    // it is a job that ends at once with no delivery. Any other job without codes is a mistake.
    // The same for a revoke of every code of a campaign that has none.
    let may_be_empty = matches!(codes, Codes::Mirror { .. } | Codes::Revoke(None));
    let staged = match stage(rt, store, id, &campaign, codes, &mut faults) {
        Ok(0) if faults.count == 0 && !may_be_empty => {
            faults.push(
                "codes".into(),
                "a job needs at least one code, and none was given".into(),
            );
            Err(Stop::Refused)
        }
        Ok(_) if faults.count > 0 => Err(Stop::Refused),
        other => other.map(|_| ()),
    };
    if let Err(stop) = staged {
        // A refused job leaves nothing behind (a failure here leaves it to the next start).
        if let Err(e) = rt.block_on(store.discard_job(id)) {
            tracing::error!(job = id, "a refused job's staged codes stay until the next start: {e}");
        }
        return Err(match stop {
            Stop::Refused => faults.into_error(),
            Stop::Store(e) => ledger_error(e),
        });
    }
    rt.block_on(store.commit_job(id)).map_err(ledger_error)?;
    Ok(id)
}

/// Stages every item; how many were staged. Faults are collected, not returned, so that a
/// refused job lists them all.
fn stage(
    rt: &Handle,
    store: &dyn Store,
    id: i64,
    campaign: &str,
    codes: Codes<'_>,
    faults: &mut Faults,
) -> Result<u64, Stop> {
    let mut staged = 0u64;
    match codes {
        Codes::Items(mut items) => loop {
            // Read and validated before the store is asked: only its checks hold the ledger.
            let slice: Vec<_> = items.by_ref().take(INTAKE_SLICE).collect();
            if slice.is_empty() {
                break;
            }
            let mut at = Vec::with_capacity(slice.len());
            let mut defs = Vec::with_capacity(slice.len());
            for (where_, item) in slice {
                match item {
                    Ok(def) => {
                        at.push(where_);
                        defs.push(def);
                    }
                    Err(problem) => faults.push(where_, problem),
                }
            }
            for (where_, verdict) in at.into_iter().zip(rt.block_on(store.stage(id, defs, StageAs::Given))?) {
                staged += judge(verdict, where_, campaign, faults);
            }
        },
        Codes::Generate {
            count: wanted,
            capacity,
            mut next,
        } => {
            let mut taken_in_a_row = 0;
            while staged < wanted {
                let n = (wanted - staged).min(INTAKE_SLICE as u64) as usize;
                let drawn: Vec<Definition> = (0..n).map(|_| next()).collect();
                for verdict in rt.block_on(store.stage(id, drawn, StageAs::Fresh))? {
                    if verdict == Staged::Accepted {
                        staged += 1;
                        taken_in_a_row = 0;
                        continue;
                    }
                    taken_in_a_row += 1;
                    if taken_in_a_row == MAX_TAKEN_IN_A_ROW {
                        faults.push(
                            "generate.pattern".into(),
                            format!(
                                "drew {MAX_TAKEN_IN_A_ROW} taken codes in a row after {staged} new ones: the pattern makes {capacity} codes, and too few of them are free for {wanted}"
                            ),
                        );
                        return Err(Stop::Refused);
                    }
                }
            }
        }
        Codes::Mirror { targets } => {
            for page in campaign_pages(rt, store, campaign) {
                let defs: Vec<Definition> = page?
                    .into_iter()
                    .filter(|record| record.to_mirror(&targets))
                    .map(|record| Definition {
                        campaign: campaign.to_owned(),
                        code: record.code,
                        json: record.definition.to_string(),
                    })
                    .collect();
                if defs.is_empty() {
                    continue;
                }
                for verdict in rt.block_on(store.stage(id, defs, StageAs::Given))? {
                    staged += judge(verdict, "codes".into(), campaign, faults);
                }
            }
        }
        Codes::Revoke(Some(names)) => {
            let mut names = names.into_iter().peekable();
            while names.peek().is_some() {
                let (at, slice): (Vec<String>, Vec<String>) = names.by_ref().take(INTAKE_SLICE).unzip();
                for (where_, verdict) in at.into_iter().zip(rt.block_on(store.stage_revokes(id, slice))?) {
                    staged += judge(verdict, where_, campaign, faults);
                }
            }
        }
        Codes::Revoke(None) => {
            for page in campaign_pages(rt, store, campaign) {
                let names = page?.into_iter().map(|record| record.code).collect();
                for verdict in rt.block_on(store.stage_revokes(id, names))? {
                    staged += judge(verdict, "codes".into(), campaign, faults);
                }
            }
        }
    }
    Ok(staged)
}

/// The campaign's codes as the ledger holds them, a slice at a time, in the ledger's order.
fn campaign_pages<'a>(
    rt: &'a Handle,
    store: &'a dyn Store,
    campaign: &'a str,
) -> impl Iterator<Item = Result<Vec<CodeRecord>, StoreError>> + 'a {
    let mut after = Some(0);
    std::iter::from_fn(move || {
        let filter = CodeFilter {
            campaign: Some(campaign.to_owned()),
            after: after?,
            limit: INTAKE_SLICE,
            ..CodeFilter::default()
        };
        match rt.block_on(store.codes(filter)) {
            Err(e) => {
                after = None;
                Some(Err(e))
            }
            Ok(page) => {
                after = Some(page.last()?.0);
                Some(Ok(page.into_iter().map(|(_, record)| record).collect()))
            }
        }
    })
}

/// Counts an accepted item (1), or lists why one was not (0).
fn judge(verdict: Staged, at: String, campaign: &str, faults: &mut Faults) -> u64 {
    match verdict {
        Staged::Accepted => return 1,
        Staged::Refused(conflict) => faults.push(at, format!("code: {conflict}")),
        Staged::Taken => faults.push(at, "code: taken".into()),
        Staged::Unknown => faults.push(
            at,
            format!("code: the ledger holds no such code in campaign `{campaign}`, so there is nothing to revoke"),
        ),
    }
    0
}
