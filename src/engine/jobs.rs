//! Sync jobs: many codes, several targets, delivered in the background at each upstream's
//! own pace, durably.
//!
//! A job is accepted whole or not at all: its codes are read (from a JSON list, a CSV or NDJSON
//! upload streamed to a temporary file, a generator, or the ledger's codes of a campaign for a
//! mirror), validated, and written to the ledger with every target `pending`, in short slices
//! that let creates in between (see `Store::create_job`); a single bad line refuses the job and
//! changes nothing. Then one worker per
//! target walks the job's pending deliveries in pages, so memory stays flat however long the
//! job, and records each outcome as it arrives. A crash leaves `pending` exactly what may not
//! have been delivered; the next start resumes the job from there.
//!
//! Each run obeys one switch ([`Control`]): cancel (the job ends, its undelivered codes
//! `cancelled`) or pause (at shutdown: the job stays `running` for the next start). Either way
//! its workers start no new vendor call, in one place (`Gate`), and the calls in flight finish
//! and are recorded.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use promo_adapters::adapter::translate;
use promo_adapters::model::validate;
use promo_adapters::{BuildContext, PromoCode, Translation};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::auth::Credentials;
use crate::domain::code::Definition;
use crate::domain::error::DomainError;
use crate::domain::job::{JobRecord, JobResult, JobState, NewJob, WorkItem};
use crate::domain::request::OpKind;
use crate::engine::intake::{self, Codes};
use crate::engine::revoke_job;
use crate::engine::{self, ledger_error, Engine, ErrorKind, Status, TargetResult};
use crate::ports::{StoreError, StoreErrorKind};
use crate::upstream::{Halt, Patience, Upstream};
use promo_adapters::Problems;

/// Codes read from the ledger per round of a target's worker.
const PAGE: usize = 256;
/// Deliveries of one target in flight at once from a job (the upstream's own cap still holds).
const CONCURRENCY: usize = 32;
/// How often a running job looks whether another process ended it (see `Engine::watch_job`).
const JOB_WATCH: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a job waits before trying a ledger that could not be reached again.
const LEDGER_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Codes a generator may be asked for in one job.
pub const MAX_GENERATE: u64 = 1_000_000;
/// The characters a generated code's random part is drawn from: no 0/O, 1/I/L, 5/S, 2/Z,
/// which people misread when they type a code off a poster.
pub const ALPHABET: &[u8] = b"346789ABCDEFGHJKMNPQRTUVWXY";

/// What a new job delivers, and where its codes come from.
pub struct JobSpec {
    pub campaign: String,
    pub targets: Vec<String>,
    /// Fields every code of the job shares (discount, dates...); each code's own fields win.
    pub template: Map<String, Value>,
    pub on_unsupported: Option<Value>,
    pub source: Source,
}

pub enum Source {
    /// Codes given inline: each a string (the code) or an object of unified fields.
    Inline(Vec<Value>),
    /// An uploaded file, already on disk. Each line (NDJSON) or row (CSV) is one code, held to
    /// `max_item_bytes` as a create's body is (`server.max_body_bytes`), and never read into
    /// memory beyond that.
    File {
        path: std::path::PathBuf,
        format: Format,
        max_item_bytes: usize,
    },
    /// `count` codes from a pattern such as `SPRING-{random:8}`.
    Generate { count: u64, pattern: Pattern },
    /// Every code the ledger holds for the campaign.
    Mirror,
    /// A revoke of the campaign's codes named (`None`: every one it holds) at the job's
    /// targets; `delete` asks for the hard form, as a single revoke's does.
    Revoke { codes: Option<Vec<String>>, delete: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// A code pattern: literal text around one `{random:N}` part.
#[derive(Debug, Clone)]
pub struct Pattern {
    prefix: String,
    random: usize,
    suffix: String,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (prefix, rest) = text
            .split_once("{random:")
            .ok_or("must contain one {random:N} part, e.g. SPRING-{random:8}")?;
        let (n, suffix) = rest.split_once('}').ok_or("{random:N} is not closed")?;
        let random: usize = n
            .parse()
            .ok()
            .filter(|n| (4..=32).contains(n))
            .ok_or("{random:N} takes N from 4 to 32")?;
        if suffix.contains("{random:") {
            return Err("may contain only one {random:N} part".into());
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            random,
            suffix: suffix.to_owned(),
        })
    }

    /// How many distinct codes the pattern makes: the alphabet's size to the power of the
    /// random part's length (saturating: beyond u64 it is plenty).
    pub fn capacity(&self) -> u64 {
        (ALPHABET.len() as u64)
            .checked_pow(self.random as u32)
            .unwrap_or(u64::MAX)
    }

    /// One code, its random part drawn by the thread's CSPRNG (ChaCha, seeded from the OS).
    pub fn draw(&self) -> String {
        let mut rng = rand::rng();
        let random: String = (0..self.random)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("{}{random}{}", self.prefix, self.suffix)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{random:{}}}{}", self.prefix, self.random, self.suffix)
    }
}

/// A job as `GET /v1/sync-jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    #[serde(flatten)]
    pub job: JobRecord,
    pub targets_progress: BTreeMap<String, TargetProgress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetProgress {
    /// Codes on this target, settled or not.
    pub total: u64,
    /// Codes not yet settled.
    pub pending: u64,
    /// Codes by state.
    pub counts: BTreeMap<Status, u64>,
    /// Codes per second this upstream's rate limit allows (times its batch size).
    pub rate_per_second: u64,
    /// Codes per second settled on this target since the job's run in this process began, once
    /// it has run for a second and settled some: a vendor slower than its quota shows here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_per_second: Option<f64>,
    /// Seconds until the pending codes are settled: at the observed pace where there is one,
    /// else at the rate limit's.
    pub eta_seconds: u64,
}

impl JobStatus {
    /// Deliveries that ended without the code on the vendor and can be tried again.
    pub fn failed(&self) -> u64 {
        self.targets_progress
            .values()
            .map(|p| {
                [Status::Failed, Status::Throttled]
                    .iter()
                    .map(|s| p.counts.get(s).copied().unwrap_or(0))
                    .sum::<u64>()
            })
            .sum()
    }
}

impl Engine {
    /// Validates a job, writes it and its codes to the ledger, and starts it.
    pub async fn start_job(self: &Arc<Self>, spec: JobSpec) -> Result<i64, DomainError> {
        let mut p = Problems::default();
        // A revoke job's fields are under `revoke`, a mirror's targets under `mirror.to`.
        let (campaign_at, targets_at) = match spec.source {
            Source::Revoke { .. } => ("revoke.campaign", "revoke.targets"),
            Source::Mirror => ("mirror.campaign", "mirror.to"),
            _ => ("campaign", "targets"),
        };
        if self.campaign(&spec.campaign).is_none() {
            p.push(
                campaign_at,
                format!("`{}` has no mapping file in mappings/", spec.campaign),
            );
        }
        if spec.targets.is_empty() {
            p.push(targets_at, "must name at least one upstream");
        }
        for (i, t) in spec.targets.iter().enumerate() {
            if !self.upstreams.contains_key(t) {
                p.push(
                    format!("{targets_at}[{i}]"),
                    format!(
                        "`{t}` is not a configured upstream (known: {})",
                        self.upstreams.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if spec.targets[..i].contains(t) {
                p.push(format!("{targets_at}[{i}]"), format!("`{t}` is listed twice"));
            }
        }
        match &spec.source {
            Source::Generate { pattern, .. } if p.is_empty() => self.check_template(&spec, pattern, &mut p),
            _ => {}
        }
        if !p.is_empty() {
            return Err(DomainError::Invalid(p));
        }
        let engine = self.clone();
        let rt = tokio::runtime::Handle::current();
        let id = tokio::task::spawn_blocking(move || engine.write_job(&rt, spec))
            .await
            .map_err(|e| DomainError::Unavailable(e.to_string()))??;
        // A mirror with nothing to mirror is done when it is answered, not a moment later.
        let empty = self
            .store
            .job(id)
            .await
            .map_err(ledger_error)?
            .is_some_and(|j| j.total == 0);
        if empty {
            self.store.end_job(id, JobState::Done).await.map_err(ledger_error)?;
            return Ok(id);
        }
        self.clone().spawn_job(id);
        Ok(id)
    }

    /// A generator's codes are its template with a drawn name, so the template is checked
    /// once, as a create of one drawn code would be, each problem named under `template` (a
    /// name the pattern drew at fault under `generate.pattern`).
    fn check_template(&self, spec: &JobSpec, pattern: &Pattern, p: &mut Problems) {
        let mut body = spec.template.clone();
        body.insert("code".into(), Value::String(pattern.draw()));
        body.insert("campaign".into(), Value::String(spec.campaign.clone()));
        body.insert("targets".into(), json!(spec.targets));
        if let Some(o) = &spec.on_unsupported {
            body.insert("on_unsupported".into(), o.clone());
        }
        if let Err(problems) = validate(&Value::Object(body), &self.validation_context()) {
            for problem in problems.iter() {
                let at = match problem.field.as_str() {
                    "code" => "generate.pattern".to_owned(),
                    field => format!("template.{field}"),
                };
                p.push(at, problem.rule.clone());
            }
        }
    }

    /// The blocking half of [`Engine::start_job`]: reads the codes lazily as the ledger takes
    /// them in, so a file of any length is never held in memory.
    fn write_job(&self, rt: &tokio::runtime::Handle, spec: JobSpec) -> Result<i64, DomainError> {
        let JobSpec {
            campaign,
            targets,
            template,
            on_unsupported,
            source,
        } = spec;
        let mut operation = OpKind::Create;
        let mut options = json!({ "on_unsupported": on_unsupported });
        let item = |value: Value| self.definition(&campaign, &targets, &template, on_unsupported.as_ref(), value);
        let (source_name, codes): (&str, Codes<'_>) = match source {
            Source::Inline(items) => (
                "json",
                Codes::Items(Box::new(
                    items
                        .into_iter()
                        .enumerate()
                        .map(move |(i, v)| (format!("codes[{i}]"), item(v))),
                )),
            ),
            Source::File {
                path,
                format,
                max_item_bytes,
            } => {
                let lines = read_file(&path, format, max_item_bytes)
                    .map_err(|e| DomainError::UnreadableUpload(e.to_string()))?;
                (
                    format.name(),
                    Codes::Items(Box::new(lines.map(move |(at, v)| (at, v.and_then(&item))))),
                )
            }
            Source::Generate { count, pattern } => {
                let template = template.clone();
                let campaign = campaign.clone();
                (
                    "generate",
                    Codes::Generate {
                        count,
                        capacity: pattern.capacity(),
                        next: Box::new(move || {
                            let code = pattern.draw();
                            let mut body = template.clone();
                            body.insert("code".into(), Value::String(code.clone()));
                            body.insert("campaign".into(), Value::String(campaign.clone()));
                            Definition::of(&Value::Object(body), Some(&campaign), &code)
                        }),
                    },
                )
            }
            Source::Mirror => (
                "mirror",
                Codes::Mirror {
                    targets: targets.clone(),
                },
            ),
            Source::Revoke { codes, delete } => {
                operation = OpKind::Revoke;
                options = json!({ "delete": delete });
                let named = codes.map(|codes| {
                    codes
                        .into_iter()
                        .enumerate()
                        .map(|(i, code)| (format!("revoke.codes[{i}]"), code))
                        .collect()
                });
                (if named.is_some() { "json" } else { "campaign" }, Codes::Revoke(named))
            }
        };
        let job = NewJob {
            operation,
            campaign: campaign.clone(),
            targets: targets.clone(),
            source: source_name.to_owned(),
            options,
        };
        intake::take_in(rt, &*self.store, job, codes)
    }

    /// One item of a job as a code definition: the template, the item's own fields over it,
    /// the job's campaign; validated as a create to the job's targets would be.
    fn definition(
        &self,
        campaign: &str,
        targets: &[String],
        template: &Map<String, Value>,
        on_unsupported: Option<&Value>,
        item: Value,
    ) -> Result<Definition, String> {
        let mut body = template.clone();
        match item {
            Value::String(code) => {
                body.insert("code".into(), Value::String(code));
            }
            Value::Object(fields) => body.extend(fields),
            _ => return Err("must be a code (a string) or an object of promo-code fields".into()),
        }
        for key in ["campaign", "targets"] {
            if body.contains_key(key) {
                return Err(format!("{key}: is set by the job, not per code"));
            }
        }
        body.insert("campaign".into(), Value::String(campaign.to_owned()));
        body.insert("targets".into(), json!(targets));
        if let Some(o) = on_unsupported {
            body.insert("on_unsupported".into(), o.clone());
        }
        let body = Value::Object(body);
        let request = validate(&body, &self.validation_context()).map_err(|p| p.to_string())?;
        Ok(Definition::of(&body, Some(campaign), &request.promo.code))
    }

    /// The jobs this process is running now (paused ones included), by id.
    pub(crate) fn running_job_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Runs a job in the background until its targets are settled, it is cancelled, or it is
    /// paused (at shutdown). A job started while the gateway shuts down begins paused.
    pub fn spawn_job(self: Arc<Self>, id: i64) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let start = if jobs.pausing { Control::Pause } else { Control::Run };
        let (control, controlled) = watch::channel(start);
        let mine = control.subscribe();
        let watched = control.clone();
        jobs.running.insert(id, control);
        drop(jobs);
        self.clone().watch_job(id, watched);
        tokio::spawn(async move {
            // The pace this run achieves is measured from here (see `job_status`).
            if let Ok(counts) = self.store.job_counts(id).await {
                let pending = counts.into_iter().map(|(t, c)| (t, pending_of(&c))).collect();
                let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                jobs.started.insert(id, (self.clock.now(), pending));
            }
            // A ledger that cannot be reached pauses the run, which goes on when it answers
            // again: the job stays this process's (its lease is renewed when the ledger
            // returns), and what was not recorded is still pending.
            loop {
                match self.run_job(id, controlled.clone()).await {
                    Ok(()) => break,
                    Err(e)
                        if e.kind == StoreErrorKind::Unavailable
                            && matches!(*controlled.borrow(), Control::Run | Control::Cancel) =>
                    {
                        tracing::warn!(job = id, "sync job waiting for the ledger: {e}");
                        let mut control = controlled.clone();
                        let halted = control.wait_for(|c| matches!(c, Control::Pause | Control::Stop));
                        let _ = tokio::time::timeout(LEDGER_RETRY, halted).await;
                    }
                    Err(e) => {
                        tracing::error!(job = id, "sync job stopped: {e}");
                        break;
                    }
                }
            }
            // A retry may already have registered the job's next run: leave that one alone.
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if jobs.running.get(&id).is_some_and(|c| mine.same_channel(&c.subscribe())) {
                jobs.running.remove(&id);
                jobs.started.remove(&id);
            }
        });
    }

    /// Stops this process's run of job `id` when another process on a shared ledger ends it (a
    /// cancel sent to another replica): its workers start no new call from then on, whatever
    /// page they are in, and the job is left as the other process ended it. Looks every
    /// [`JOB_WATCH`] while the run lasts and goes on as it was asked.
    fn watch_job(self: Arc<Self>, id: i64, control: watch::Sender<Control>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(JOB_WATCH).await;
                if control.is_closed() || *control.borrow() != Control::Run {
                    return;
                }
                let ended = match self.store.job(id).await {
                    Ok(job) => job.is_none_or(|j| j.state != JobState::Running),
                    // The run itself waits for a ledger that does not answer.
                    Err(_) => false,
                };
                let stop = |c: &mut Control| {
                    let run = *c == Control::Run;
                    if run {
                        *c = Control::Stop;
                    }
                    run
                };
                if ended && control.send_if_modified(stop) {
                    tracing::info!(job = id, "sync job ended by another process; stopping its run here");
                    return;
                }
            }
        });
    }

    /// Pauses every running job, and every job started from now on (the gateway is shutting
    /// down): its workers start no new vendor call, the calls in flight finish and are recorded,
    /// and the job stays `running` in the ledger for the next start to resume. A job being
    /// cancelled is left to its cancel.
    pub fn pause_jobs(&self) -> Paused {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.pausing = true;
        let paused = jobs
            .running
            .iter()
            .filter(|(_, control)| {
                control.send_if_modified(|c| {
                    let run = *c == Control::Run;
                    if run {
                        *c = Control::Pause;
                    }
                    run
                })
            })
            .map(|(&id, control)| (id, control.clone()))
            .collect();
        Paused(paused)
    }

    /// Whether the gateway is stopping (its jobs paused): it hands work over and takes none.
    pub fn stopping(&self) -> bool {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).pausing
    }

    /// The switch of job `id`'s run in this process, if it runs.
    fn job_control(&self, id: i64) -> Option<watch::Sender<Control>> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.running.get(&id).cloned()
    }

    /// Asks a running job to stop: calls in flight finish and are recorded, nothing new is sent,
    /// and the deliveries left are marked `cancelled`.
    pub async fn cancel_job(&self, id: i64) -> Result<JobStatus, DomainError> {
        let status = self.job_status(id).await?;
        if status.job.state != JobState::Running {
            return Err(DomainError::JobState {
                id,
                state: format!("{:?}", status.job.state).to_lowercase(),
                action: "cancel it",
            });
        }
        match self.job_control(id) {
            Some(cancel) => {
                cancel.send_replace(Control::Cancel);
                // The worker ends the job once its calls in flight are recorded.
                let mut done = cancel.subscribe();
                while self.job_control(id).is_some() {
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(20), done.changed()).await;
                }
            }
            // Not running here: on another replica (whose runner sees the state between pages and
            // stops), or nowhere.
            None => {
                self.store
                    .end_job(id, JobState::Cancelled)
                    .await
                    .map_err(ledger_error)?;
            }
        }
        self.job_status(id).await
    }

    /// Sends the job's failed, throttled and cancelled deliveries again.
    pub async fn retry_job(self: &Arc<Self>, id: i64) -> Result<JobStatus, DomainError> {
        let status = self.job_status(id).await?;
        if status.job.state == JobState::Running {
            return Err(DomainError::JobState {
                id,
                state: "running".into(),
                action: "retry it before it ends",
            });
        }
        let reopened = self.store.retry_job(id).await.map_err(ledger_error)?;
        tracing::info!(job = id, deliveries = reopened, "retrying a sync job");
        self.clone().spawn_job(id);
        self.job_status(id).await
    }

    pub async fn job_status(&self, id: i64) -> Result<JobStatus, DomainError> {
        let job = self
            .store
            .job(id)
            .await
            .map_err(ledger_error)?
            .ok_or_else(|| DomainError::NotFound(format!("/v1/sync-jobs/{id}")))?;
        let counts = self.store.job_counts(id).await.map_err(ledger_error)?;
        let started = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .started
            .get(&id)
            .cloned();
        let now = self.clock.now();
        let targets_progress = counts
            .into_iter()
            .map(|(target, counts)| {
                let pending = pending_of(&counts);
                let batch = self.upstreams.get(&target).map_or(1, |u| u.adapter.batch_size()) as u64;
                let rate = u64::from(self.rates.get(&target).copied().unwrap_or(1)) * batch;
                let observed = started.as_ref().and_then(|(at, before)| {
                    let seconds = (now - *at).num_milliseconds() as f64 / 1000.0;
                    let settled = before.get(&target)?.saturating_sub(pending);
                    // To a tenth, as shown; the ETA is computed from the figure shown.
                    let pace = (settled as f64 / seconds * 10.0).round() / 10.0;
                    (seconds >= 1.0 && pace > 0.0).then_some(pace)
                });
                let eta_seconds = match observed {
                    Some(pace) => (pending as f64 / pace).ceil() as u64,
                    None => pending.div_ceil(rate.max(1)),
                };
                let progress = TargetProgress {
                    total: counts.values().sum(),
                    pending,
                    rate_per_second: rate,
                    observed_per_second: observed,
                    eta_seconds,
                    counts,
                };
                (target, progress)
            })
            .collect();
        Ok(JobStatus { job, targets_progress })
    }

    pub async fn job_results(
        &self,
        id: i64,
        status: Option<Status>,
        upstream: Option<String>,
        after: (i64, String),
        limit: usize,
    ) -> Result<Vec<JobResult>, DomainError> {
        self.store
            .job(id)
            .await
            .map_err(ledger_error)?
            .ok_or_else(|| DomainError::NotFound(format!("/v1/sync-jobs/{id}")))?;
        self.store
            .job_results(id, status, upstream, after, limit)
            .await
            .map_err(ledger_error)
    }

    async fn run_job(&self, id: i64, control: watch::Receiver<Control>) -> Result<(), StoreError> {
        let Some(job) = self.store.job(id).await? else {
            return Ok(());
        };
        let workers = job
            .targets
            .iter()
            .map(|target| self.run_target(&job, target, control.clone()));
        for result in futures::future::join_all(workers).await {
            result?;
        }
        let stopped = *control.borrow();
        let state = match stopped {
            Control::Run => JobState::Done,
            Control::Cancel => JobState::Cancelled,
            // Ended elsewhere: left as it is.
            Control::Stop => {
                tracing::info!(
                    job = id,
                    "sync job stopped here: it was ended or taken over by another process"
                );
                return Ok(());
            }
            Control::Pause => {
                // Not ended: the job stays `running`, its undelivered codes `pending`.
                tracing::info!(job = id, "sync job paused; the next start resumes it");
                return Ok(());
            }
        };
        if self.store.end_job(id, state).await? {
            tracing::info!(job = id, ?state, "sync job ended");
        } else {
            tracing::info!(
                job = id,
                "sync job stopped here: it was ended or taken over by another process"
            );
        }
        Ok(())
    }

    /// Settles the job's pending codes on one target, page by page: a create job's deliveries,
    /// a revoke job's revocations. A revoke job's code that a create is delivering there right
    /// now waits (a page is read again) until that create's outcome says whether there is
    /// anything to revoke, for at most [`revoke_job::CREATE_WAIT`].
    async fn run_target(
        &self,
        job: &JobRecord,
        target: &str,
        control: watch::Receiver<Control>,
    ) -> Result<(), StoreError> {
        let upstream = self.upstreams.get(target).cloned();
        let gate = Gate { control };
        let batch = upstream.as_ref().map_or(1, |u| match job.operation {
            OpKind::Create => u.adapter.batch_size().max(1),
            OpKind::Revoke => u.adapter.revoke_batch_size().max(1),
        });
        let page_size = (PAGE / batch).max(1) * batch;
        let mut after = 0;
        // Codes passed over in this walk because a create is delivering them, and since when
        // the walk has been waiting for such codes.
        let mut waiting = 0usize;
        let mut waiting_since: Option<tokio::time::Instant> = None;
        loop {
            if !gate.open() {
                return Ok(());
            }
            // Another process on a shared ledger may have cancelled the job since the last
            // page: then nothing more is sent. (`job_work` gives nothing once another owner
            // has adopted it.)
            if self
                .store
                .job(job.id)
                .await?
                .is_none_or(|j| j.state != JobState::Running)
            {
                return Ok(());
            }
            let page = self.store.job_work(job.id, target.to_owned(), after, page_size).await?;
            let Some(last) = page.last() else {
                if waiting == 0 {
                    return match (&upstream, job.operation) {
                        (Some(upstream), OpKind::Revoke) if batch > 1 => {
                            self.read_back_bulk(job, target, upstream, &gate).await
                        }
                        _ => Ok(()),
                    };
                }
                // Walk the job again for the codes that waited.
                waiting_since.get_or_insert_with(tokio::time::Instant::now);
                waiting = 0;
                after = 0;
                tokio::time::sleep(revoke_job::CREATE_POLL).await;
                continue;
            };
            after = last.seq;
            let Some(upstream) = &upstream else {
                let settled = page
                    .iter()
                    .map(|w| {
                        let r = TargetResult::new(target, None, Status::Unconfigured).with_error(
                            ErrorKind::UnknownUpstream,
                            format!("config.toml has no [upstreams.{target}]"),
                        );
                        (w.code_id, r)
                    })
                    .collect();
                self.store.record(job.operation, settled).await?;
                continue;
            };
            match job.operation {
                OpKind::Create => self.create_page(job, target, upstream, page, &gate).await?,
                OpKind::Revoke => {
                    let give_up = waiting_since.is_some_and(|since| since.elapsed() >= revoke_job::CREATE_WAIT);
                    waiting += self.revoke_page(job, target, upstream, page, &gate, give_up).await?;
                }
            }
        }
    }

    /// Delivers one page of a create job's codes to one target.
    async fn create_page(
        &self,
        job: &JobRecord,
        target: &str,
        upstream: &Upstream,
        page: Vec<crate::domain::job::JobWork>,
        gate: &Gate,
    ) -> Result<(), StoreError> {
        let on_unsupported = job.options.get("on_unsupported").filter(|v| !v.is_null()).cloned();
        let ctx = self.job_context(job, target, upstream);
        let mut settled = Vec::new();
        let mut ready = Vec::new();
        for w in page {
            let (mut body, revoked) = match w.item {
                WorkItem::Create { definition, revoked } => (definition, revoked),
                WorkItem::Revoke(_) => unreachable!("a create job's work is creates"),
            };
            if revoked {
                settled.push((w.code_id, engine::withheld_revoked(target, Some(upstream.vendor))));
                continue;
            }
            if let Some(obj) = body.as_object_mut() {
                obj.insert("targets".into(), json!([target]));
                if let Some(o) = &on_unsupported {
                    obj.insert("on_unsupported".into(), o.clone());
                }
            }
            match prepare(self, &body, upstream, &ctx) {
                Ok((code, translation)) => ready.push(Ready {
                    code_id: w.code_id,
                    code,
                    translation,
                }),
                Err(result) => settled.push((w.code_id, *result)),
            }
        }
        self.store.record(OpKind::Create, settled).await?;
        let batch = upstream.adapter.batch_size();
        // A code withheld by the gate is not recorded: it stays `pending` (a cancel then
        // marks it `cancelled`, a paused job sends it at its next run).
        //
        // Each call's slot is held until its outcome is durable, and the outcomes of
        // concurrent calls reach the ledger's writer together (group commit): the calls
        // never wait for one another's records, yet a crash can leave at most the slots'
        // worth of calls made and not recorded, to be sent again.
        if batch > 1 {
            let ctx = &ctx;
            let sends = chunked(ready, batch)
                .into_iter()
                .map(|chunk| send_batch(target, upstream, ctx, gate, chunk))
                .collect();
            self.send_all(OpKind::Create, gate, sends, 4).await
        } else {
            let sends = ready
                .into_iter()
                .map(|r| async move {
                    let result =
                        engine::send(target, &r.code, upstream, &r.translation, Patience::Background(gate)).await;
                    vec![(r.code_id, result)]
                })
                .collect();
            self.send_all(OpKind::Create, gate, sends, CONCURRENCY).await
        }
    }

    /// What a vendor's translation of a job's codes for `target` is built against.
    pub(super) fn job_context<'a>(
        &'a self,
        job: &JobRecord,
        target: &'a str,
        upstream: &'a Upstream,
    ) -> BuildContext<'a> {
        self.context(Some(&job.campaign), target, upstream)
    }

    /// Runs a page's calls, `concurrency` at a time, none started once the gate closes, and
    /// records each call's outcomes as it ends.
    pub(super) async fn send_all<F>(
        &self,
        op: OpKind,
        gate: &Gate,
        calls: Vec<F>,
        concurrency: usize,
    ) -> Result<(), StoreError>
    where
        F: std::future::Future<Output = Vec<(i64, TargetResult)>>,
    {
        let mut sends = futures::stream::iter(calls)
            .take_while(|_| std::future::ready(gate.open()))
            .map(|call| async move { self.store.record(op, sent_only(call.await)).await })
            .buffer_unordered(concurrency);
        while let Some(recorded) = sends.next().await {
            recorded?;
        }
        Ok(())
    }
}

/// What a running job's workers are told: carry on, stop for good (`cancelled`), or stop for
/// now (shutdown: the job stays `running` for the next start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    Cancel,
    Pause,
    /// Another process ended the job (a shared ledger): stop sending, change nothing.
    Stop,
}

/// The sync jobs running in this process, each with the switch its workers obey.
#[derive(Debug, Default)]
pub struct Registry {
    running: BTreeMap<i64, watch::Sender<Control>>,
    /// Where each running job's run began: when, and how many codes each target had pending.
    started: BTreeMap<i64, (DateTime<Utc>, BTreeMap<String, u64>)>,
    /// Set at shutdown: a job started from then on begins paused.
    pausing: bool,
}

impl Registry {
    /// The ids of the running jobs.
    pub fn keys(&self) -> impl Iterator<Item = &i64> {
        self.running.keys()
    }
}

/// The jobs [`Engine::pause_jobs`] paused.
pub struct Paused(Vec<(i64, watch::Sender<Control>)>);

impl Paused {
    /// Resolves once every paused job's workers have stopped, their calls in flight recorded.
    pub async fn stopped(&self) {
        futures::future::join_all(self.0.iter().map(|(_, control)| control.closed())).await;
    }

    /// The ids of the paused jobs.
    pub fn ids(&self) -> Vec<i64> {
        self.0.iter().map(|(id, _)| *id).collect()
    }
}

/// The one place a job's worker asks whether to start another vendor call. It is also the
/// job's [`Halt`]: a call already waiting in the upstream (for its rate limiter, in-flight cap,
/// a Retry-After pause or a back-off) is withheld there once the job is paused or cancelled.
pub(super) struct Gate {
    control: watch::Receiver<Control>,
}

impl Gate {
    /// Whether the job is to go on (neither paused nor cancelled).
    pub(super) fn open(&self) -> bool {
        *self.control.borrow() == Control::Run
    }
}

impl Halt for Gate {
    fn halted(&self) -> bool {
        !self.open()
    }

    fn until_halted(&self) -> futures::future::BoxFuture<'_, ()> {
        let mut control = self.control.clone();
        Box::pin(async move {
            if control.wait_for(|c| *c != Control::Run).await.is_err() {
                // The switch is gone only once the job has ended: nothing to wait for.
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Codes not yet settled, of a target's counts.
fn pending_of(counts: &BTreeMap<Status, u64>) -> u64 {
    counts.get(&Status::Pending).copied().unwrap_or(0)
}

/// The outcomes of calls the job made. A call the gate withheld comes back `pending` and is
/// not recorded: the delivery stays claimed by the job, as it was.
fn sent_only(results: Vec<(i64, TargetResult)>) -> Vec<(i64, TargetResult)> {
    results
        .into_iter()
        .filter(|(_, r)| r.status != Status::Pending)
        .collect()
}

/// A code ready to go to one target.
struct Ready {
    code_id: i64,
    code: PromoCode,
    translation: Translation,
}

pub(super) fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(size).collect());
    }
    out
}

/// Translates one job code for one target, or settles it without a call.
fn prepare(
    engine: &Engine,
    body: &Value,
    upstream: &Upstream,
    ctx: &BuildContext<'_>,
) -> Result<(PromoCode, Translation), Box<TargetResult>> {
    let target = ctx.upstream;
    let request = validate(body, &engine.validation_context()).map_err(|p| {
        Box::new(
            TargetResult::new(target, Some(upstream.vendor), Status::Invalid)
                .with_error(ErrorKind::InvalidForVendor, p.to_string()),
        )
    })?;
    let translation = translate(
        upstream.adapter.as_ref(),
        &request.promo,
        request.on_unsupported,
        None,
        ctx,
    )
    .map_err(|e| Box::new(engine::refused(target, upstream.vendor, e)))?;
    if let Credentials::Missing(vars) = &upstream.credentials {
        return Err(Box::new(engine::missing_credentials(
            engine::translated(target, upstream, &translation),
            vars,
        )));
    }
    Ok((request.promo, translation))
}

/// Sends codes in one call where the vendor takes several (Moltin). A batch the vendor refuses
/// or partly holds already is split in halves until the codes at fault stand alone, so one bad
/// code does not sink its neighbours.
fn send_batch<'a>(
    target: &'a str,
    upstream: &'a Upstream,
    ctx: &'a BuildContext<'a>,
    gate: &'a Gate,
    chunk: Vec<Ready>,
) -> futures::future::BoxFuture<'a, Vec<(i64, TargetResult)>> {
    Box::pin(async move {
        if chunk.len() == 1 {
            let r = &chunk[0];
            let result = engine::send(target, &r.code, upstream, &r.translation, Patience::Background(gate)).await;
            return vec![(r.code_id, result)];
        }
        let codes: Vec<&PromoCode> = chunk.iter().map(|r| &r.code).collect();
        let request = match upstream.adapter.build_batch(&codes, ctx) {
            Ok(t) => t,
            Err(e) => {
                return chunk
                    .iter()
                    .map(|r| (r.code_id, engine::refused(target, upstream.vendor, e.clone())))
                    .collect()
            }
        };
        let sent = engine::send(target, &chunk[0].code, upstream, &request, Patience::Background(gate)).await;
        match sent.status {
            Status::Rejected | Status::AlreadyExists if !refused_the_caller(&sent) => {
                let mut left = chunk;
                let right = left.split_off(left.len() / 2);
                let mut out = send_batch(target, upstream, ctx, gate, left).await;
                out.extend(send_batch(target, upstream, ctx, gate, right).await);
                out
            }
            _ => chunk
                .into_iter()
                .map(|r| {
                    let mut result = engine::translated(target, upstream, &r.translation);
                    result.status = sent.status;
                    result.attempts = sent.attempts;
                    result.error = sent.error.clone();
                    // In a batch each code is its own id within the promotion (see the adapter).
                    result.vendor_id = (sent.status == Status::Created).then(|| r.code.code.clone());
                    (r.code_id, result)
                })
                .collect(),
        }
    })
}

/// A 401 or 403: the vendor refused the caller's credentials, not the codes, so splitting the
/// batch would only repeat the refusal for every half (99 calls for 50 codes).
pub(super) fn refused_the_caller(result: &TargetResult) -> bool {
    matches!(result.error.as_ref().and_then(|e| e.http_status), Some(401 | 403))
}

/// Items of an upload, each with where it is ("line 7") and its value or what is wrong with it.
type Lines = Box<dyn Iterator<Item = (String, Result<Value, String>)> + Send>;

/// What is wrong with an NDJSON line that is not one JSON value, or repeats a key.
fn json_line_problem(e: promo_adapters::json::JsonError) -> String {
    match e {
        promo_adapters::json::JsonError::Syntax(e) => format!("is not JSON: {e}"),
        duplicate => duplicate.to_string(),
    }
}

/// Why an upload's line or row is refused for its size, naming the limit it breaks.
fn too_long(limit: usize) -> String {
    format!("is longer than {limit} bytes: a code may be at most server.max_body_bytes ({limit} bytes), as in a create")
}

/// The lines of an uploaded file, read lazily; none is held in memory beyond `limit` bytes.
fn read_file(path: &Path, format: Format, limit: usize) -> std::io::Result<Lines> {
    let file = std::fs::File::open(path)?;
    Ok(match format {
        Format::Ndjson => Box::new(
            BoundedLines {
                reader: std::io::BufReader::with_capacity(64 * 1024, file),
                limit,
                number: 0,
            }
            .filter_map(move |(number, line)| {
                let at = format!("line {number}");
                match line {
                    Err(LineError::Io(e)) => Some((at, Err(format!("is unreadable: {e}")))),
                    Err(LineError::TooLong) => Some((at, Err(too_long(limit)))),
                    Ok(l) if l.iter().all(u8::is_ascii_whitespace) => None,
                    Ok(l) => Some((at, promo_adapters::json::parse(&l).map_err(json_line_problem))),
                }
            }),
        ),
        Format::Csv => csv_rows(file, limit),
    })
}

/// What is wrong with a line of an NDJSON upload.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("unreadable: {0}")]
    Io(#[from] std::io::Error),
    #[error("too long")]
    TooLong,
}

/// The lines of a file, numbered from 1, each at most `limit` bytes (without its line end). A
/// longer line is read through to its end without being kept (`TooLong`), so one 100 MB line
/// costs no more memory than `limit`; the next line is read as usual.
struct BoundedLines<R> {
    reader: R,
    limit: usize,
    number: usize,
}

impl<R: BufRead> Iterator for BoundedLines<R> {
    type Item = (usize, Result<Vec<u8>, LineError>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        let mut over = false;
        let mut any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.number += 1;
                    return Some((self.number, Err(e.into())));
                }
            };
            if available.is_empty() {
                if !any {
                    return None;
                }
                break;
            }
            any = true;
            let end = available.iter().position(|&b| b == b'\n');
            let part = &available[..end.unwrap_or(available.len())];
            if !over && line.len() + part.len() <= self.limit + 1 {
                // One byte over the limit is allowed for the `\r` of a CRLF line end.
                line.extend_from_slice(part);
            } else {
                over = true;
                line = Vec::new();
            }
            let used = end.map_or(available.len(), |i| i + 1);
            self.reader.consume(used);
            if end.is_some() {
                break;
            }
        }
        self.number += 1;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if over || line.len() > self.limit {
            return Some((self.number, Err(LineError::TooLong)));
        }
        Some((self.number, Ok(line)))
    }
}

/// A reader that refuses to be read more than `allowed` bytes past a mark the CSV reader moves
/// to each record's start: the `csv` crate grows a record's buffers to fit the record, so this is
/// what keeps one oversized row from being read into memory.
struct RecordBound<R> {
    inner: R,
    read: u64,
    allowed: u64,
    mark: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for RecordBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mark = self.mark.load(std::sync::atomic::Ordering::Relaxed);
        if self.read.saturating_sub(mark) > self.allowed {
            return Err(std::io::Error::other(RecordTooLong));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// The error [`RecordBound`] stops a too long CSV record with.
#[derive(Debug, thiserror::Error)]
#[error("a CSV record over the per-code limit")]
struct RecordTooLong;

/// The rows of a CSV upload as unified fields. The header row is checked first: every column a
/// field a job reads, none twice (a second `percent_off` would silently win). No row is held in
/// memory beyond about `limit` bytes.
fn csv_rows(file: std::fs::File, limit: usize) -> Lines {
    const BUFFER: usize = 64 * 1024;
    let mark = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bounded = RecordBound {
        inner: file,
        read: 0,
        // What the CSV reader may have buffered ahead of the record, beyond the record itself.
        allowed: (limit + 2 * BUFFER) as u64,
        mark: mark.clone(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .buffer_capacity(BUFFER)
        .from_reader(bounded);
    let over = |e: &csv::Error| match e.kind() {
        csv::ErrorKind::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<RecordTooLong>()),
        _ => false,
    };
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) if over(&e) => return Box::new(std::iter::once(("line 1".to_owned(), Err(too_long(limit))))),
        Err(e) => {
            return Box::new(std::iter::once((
                "line 1".to_owned(),
                Err(format!("the header row is unreadable: {e}")),
            )))
        }
    };
    let mut problems = Vec::new();
    for (i, name) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&name) {
            problems.push(format!(
                "column `{name}` is not a field a job reads (columns: {})",
                CSV_COLUMNS.join(", ")
            ));
        } else if headers.iter().take(i).any(|earlier| earlier == name) {
            problems.push(format!("column `{name}` appears twice in the header row"));
        }
    }
    if !problems.is_empty() {
        return Box::new(problems.into_iter().map(|p| ("line 1".to_owned(), Err(p))));
    }
    let mut done = false;
    let mut record = csv::StringRecord::new();
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let start = reader.position().clone();
        mark.store(start.byte(), std::sync::atomic::Ordering::Relaxed);
        let at = format!("line {}", start.line());
        match reader.read_record(&mut record) {
            Ok(false) => None,
            Ok(true) => Some((at, csv_row(&headers, &record))),
            Err(e) if over(&e) => {
                // The rest of the oversized row is not read: the job is refused with it.
                done = true;
                Some((at, Err(too_long(limit))))
            }
            Err(e) => {
                // After an I/O error there is no next row to find.
                done = e.is_io_error();
                Some((at, Err(format!("is not valid CSV: {e}"))))
            }
        }
    }))
}

/// The CSV columns a job takes, each a unified field (the discount in two or three columns).
pub const CSV_COLUMNS: &[&str] = &[
    "code",
    "percent_off",
    "amount_off",
    "currency",
    "max_redemptions",
    "starts_at",
    "expires_at",
    "description",
    "first_time_only",
    "active",
    "customer_id",
    "partner_id",
];

fn csv_row(headers: &csv::StringRecord, row: &csv::StringRecord) -> Result<Value, String> {
    let mut obj = Map::new();
    let mut discount = Map::new();
    for (name, cell) in headers.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        let number = || {
            serde_json::from_str::<serde_json::Number>(cell)
                .map(Value::Number)
                .map_err(|_| format!("{name}: must be a number, got `{cell}`"))
        };
        let boolean = || match cell {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{name}: must be true or false, got `{cell}`")),
        };
        match name {
            "code" | "starts_at" | "expires_at" | "description" => {
                obj.insert(name.into(), Value::String(cell.into()));
            }
            "percent_off" | "amount_off" => {
                discount.insert(name.into(), number()?);
            }
            "currency" => {
                discount.insert(name.into(), Value::String(cell.into()));
            }
            "max_redemptions" => {
                obj.insert(name.into(), number()?);
            }
            "first_time_only" | "active" => {
                obj.insert(name.into(), boolean()?);
            }
            "customer_id" => {
                obj.insert("customer".into(), json!({ "id": cell }));
            }
            "partner_id" => {
                obj.insert("partner".into(), json!({ "id": cell }));
            }
            other => {
                return Err(format!(
                    "column `{other}` is not a field a job reads (columns: {})",
                    CSV_COLUMNS.join(", ")
                ))
            }
        }
    }
    if !discount.is_empty() {
        obj.insert("discount".into(), Value::Object(discount));
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_draws_from_the_unambiguous_alphabet() {
        let p = Pattern::parse("SPRING-{random:8}-X").unwrap();
        for _ in 0..100 {
            let code = p.draw();
            assert!(code.starts_with("SPRING-") && code.ends_with("-X"), "{code}");
            let random = &code[7..15];
            assert!(random.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
        }
        assert!(Pattern::parse("SPRING").is_err());
        assert!(Pattern::parse("{random:2}").is_err());
        assert!(Pattern::parse("{random:8}{random:8}").is_err());
    }

    #[test]
    fn a_csv_row_becomes_unified_fields() {
        let headers = csv::StringRecord::from(vec!["code", "percent_off", "max_redemptions", "customer_id"]);
        let row = csv::StringRecord::from(vec!["A1", "20", "5", "cus_1"]);
        assert_eq!(
            csv_row(&headers, &row).unwrap(),
            json!({"code": "A1", "discount": {"percent_off": 20}, "max_redemptions": 5, "customer": {"id": "cus_1"}})
        );
        let bad = csv::StringRecord::from(vec!["code", "colour"]);
        let err = csv_row(&bad, &csv::StringRecord::from(vec!["A1", "red"])).unwrap_err();
        assert!(err.contains("column `colour`"), "{err}");
    }
}
