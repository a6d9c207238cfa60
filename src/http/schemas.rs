//! The OpenAPI schemas of the types the API answers with. The domain and the engine name no web
//! crate, so each type the description shows is mirrored here under its own name (`as =`):
//! the same fields, the same serde attributes and the same doc comments, which become the
//! description's. A mirror is never built; `mirrors_describe_what_the_types_serialize` checks each
//! against a value of the type it stands for, and CI's schemathesis run checks every answer
//! against the description, so a mirror cannot drift from its type unnoticed. The adapters'
//! types (`VendorKind`, `Warning`) are described here too: that crate stays free of utoipa.

#![allow(dead_code)] // mirrors describe; they are never built

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// The vendor API an upstream speaks: a string enum of every adapter kind, taken from the
/// adapters (`VendorKind::ALL`, as they serialize it), so that a new vendor needs no line here.
#[derive(Serialize)]
pub struct VendorKindDoc;

impl VendorKindDoc {
    /// The kinds' names as the adapters serialize them.
    fn names() -> Vec<String> {
        promo_adapters::VendorKind::ALL
            .iter()
            .map(|kind| match serde_json::to_value(kind) {
                Ok(serde_json::Value::String(name)) => name,
                other => unreachable!("a vendor kind serializes as a string, not {other:?}"),
            })
            .collect()
    }
}

impl utoipa::PartialSchema for VendorKindDoc {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("The vendor API an upstream speaks."))
            .enum_values(Some(Self::names()))
            .into()
    }
}

impl ToSchema for VendorKindDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "VendorKind".into()
    }
}

/// A lossy conversion or a dropped field.
#[derive(Serialize, ToSchema)]
#[schema(as = Warning)]
pub struct WarningDoc {
    pub field: String,
    pub message: String,
}

/// What became of the code at one target. The ledger keeps the same states per delivery.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Status)]
pub enum StatusDoc {
    /// Decided and not yet answered: queued in a job, in flight, or cut short by a crash.
    Pending,
    /// The vendor created it (`vendor_id` says under which id).
    Created,
    /// The vendor already has a code by that name.
    AlreadyExists,
    /// The vendor refused it; sending it again will not help.
    Rejected,
    /// The vendor is rate-limiting us and retries ran out.
    Throttled,
    /// A transient fault, a timeout or an untrustworthy answer.
    Failed,
    /// The vendor cannot carry a restriction the code has; nothing was sent.
    Unsupported,
    /// The code breaks a rule of this vendor or contradicts its campaign mapping; nothing sent.
    Invalid,
    /// Credentials or a mapping key are missing; nothing sent.
    Unconfigured,
    /// A cancelled sync job left it unsent.
    Cancelled,
    /// Dry run: the request below is what would be sent.
    WouldSend,
    /// A revoke: the vendor's documented answer says the code is revoked (`action` says how).
    Revoked,
    /// A revoke: the ledger holds the code as revoked there already; no call was made.
    AlreadyRevoked,
    /// A revoke: the vendor answered 404. Not found at the vendor, which is not "revoked by
    /// this call".
    NotFound,
    /// A revoke: the ledger holds no created delivery of the code there; no call was made.
    NotDelivered,
}

/// What a revoke did (or, in a dry run, would do) to the code at the vendor.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RevokeAction)]
pub enum RevokeActionDoc {
    /// Retired for good, still readable (Spacebring's archive).
    Archived,
    /// Switched off, still readable (Limio v2's `status: false`).
    Deactivated,
    /// Removed outright.
    Deleted,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ErrorKind)]
pub enum ErrorKindDoc {
    VendorRejected,
    AlreadyExists,
    RateLimited,
    UpstreamError,
    InvalidResponse,
    Timeout,
    Unreachable,
    Auth,
    UnsupportedField,
    InvalidForVendor,
    ContradictsMapping,
    MissingMapping,
    MissingCredentials,
    UnknownUpstream,
    /// A create interrupted by a restart whose target could not be resent.
    NotResumed,
    /// The upstream's circuit breaker is open: it failed repeatedly, and is not called until
    /// its cool-down ends.
    UpstreamUnavailable,
    /// Another campaign's code of the same name reached the upstream after this delivery
    /// failed, so it is not sent again: a vendor keeps one code per name.
    CodeConflict,
    /// The vendor answered 404 to a revoke.
    NotFoundAtVendor,
    /// A revoke of a target where the ledger holds no created delivery.
    NotDelivered,
    /// The code was revoked: it is sent to no target again.
    Revoked,
    /// The vendor documents no call for the operation asked (a revoke at Loop, say).
    UnsupportedOperation,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TargetError)]
pub struct TargetErrorDoc {
    pub kind: ErrorKindDoc,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The vendor's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// When the upstream takes calls again (RFC 3339): the end of a Retry-After pause or of
    /// the breaker's cool-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// The request a dry run shows: exactly what would be sent, with credentials redacted.
#[derive(Serialize, ToSchema)]
#[schema(as = RequestPreview)]
pub struct RequestPreviewDoc {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Absent for a call that carries no body (some revoke calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub body: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TargetResult)]
pub struct TargetResultDoc {
    pub upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorKindDoc>,
    pub status: StatusDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetErrorDoc>,
    pub warnings: Vec<WarningDoc>,
    /// HTTP calls made to the vendor (retries included).
    pub attempts: u32,
    /// What a revoke did (or, in a dry run, would do) to the code at the vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<RevokeActionDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestPreviewDoc>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CreateResponse)]
pub struct CreateResponseDoc {
    pub code: String,
    pub dry_run: bool,
    /// The ledger's id for this create (`GET /v1/requests/{id}`); absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<i64>,
    pub results: Vec<TargetResultDoc>,
}

/// A revoke's answer: one result per target, with what the revoke asked and when the ledger
/// first held the code revoked.
#[derive(Serialize, ToSchema)]
#[schema(as = RevokeResponse)]
pub struct RevokeResponseDoc {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub dry_run: bool,
    /// Whether the hard form (a delete) was asked for.
    pub delete: bool,
    /// The ledger's id for this revoke (`GET /v1/requests/{id}`); absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<i64>,
    /// When the ledger first recorded the code revoked (RFC 3339); absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The name of the API key that asked; absent on an open gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub results: Vec<TargetResultDoc>,
}

/// A code's state at one vendor, as its read answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LiveState)]
pub enum LiveStateDoc {
    /// The vendor holds it and it can be redeemed, as far as the vendor says.
    Active,
    /// The vendor holds it archived or switched off, or (a vendor that lists only active codes)
    /// does not list it as active; the warnings say which.
    Revoked,
    /// The vendor does not hold it (a 404, or absent from a complete walk of its list).
    Absent,
    /// The vendor documents no call that reads it back; nothing was sent.
    Unreadable,
    /// The ledger holds no delivery of it there; nothing was read.
    NotDelivered,
    /// The read failed (`error` says why): what the vendor holds is not known.
    Unknown,
}

/// A unified field whose value at the vendor is not what the gateway sends for the ledger's
/// code, both in the vendor's terms (a date-only vendor's date, say).
#[derive(Serialize, ToSchema)]
#[schema(as = Difference)]
pub struct DifferenceDoc {
    /// The unified field, as a request names it (`max_redemptions`).
    pub field: String,
    /// What the gateway sends for it; `null` for none.
    pub ledger: Value,
    /// What the vendor holds; `null` for none.
    pub vendor: Value,
}

/// One target's read.
#[derive(Serialize, ToSchema)]
#[schema(as = LiveResult)]
pub struct LiveResultDoc {
    pub upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorKindDoc>,
    pub state: LiveStateDoc,
    /// The ledger's state of the code's delivery there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<StatusDoc>,
    /// The vendor's id for the code, as its read gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Redemptions so far, where the vendor counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redemptions: Option<u64>,
    pub differs: Vec<DifferenceDoc>,
    pub warnings: Vec<WarningDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetErrorDoc>,
    /// HTTP calls made for this read (pages and retries included).
    pub attempts: u32,
}

/// What each vendor holds of a code now, beside what the ledger holds.
#[derive(Serialize, ToSchema)]
#[schema(as = LiveResponse)]
pub struct LiveResponseDoc {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// When the ledger first recorded the code revoked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    pub results: Vec<LiveResultDoc>,
}

/// Why the ledger will not take a code: the `conflict` member of a 409 problem.
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schema(as = CodeConflict)]
pub enum CodeConflictDoc {
    /// The campaign holds the same code in another case or compatibility form (`SPRING20`
    /// beside `spring20`, `KEY` beside `\u{212A}EY` with the Kelvin sign).
    OtherCase { existing: String },
    /// The campaign holds this code with a different definition; codes are immutable.
    Redefined { existing: String },
    /// The same code twice in one job.
    Repeated { existing: String },
    /// Another campaign (or a code of no campaign) holds the code, in any case, at one or more
    /// of the targets: a vendor keeps one code per name, so it cannot be this campaign's there.
    OtherCampaign { held_by: Vec<HolderDoc> },
    /// The campaign's code was revoked (at `revoked_at`, RFC 3339): it is never delivered again.
    Revoked { existing: String, revoked_at: String },
}

/// Another campaign's hold on a code: the code as it spelt it, and the upstreams where that
/// code is delivered or being delivered.
#[derive(Serialize, ToSchema)]
#[schema(as = Holder)]
pub struct HolderDoc {
    /// `None` for a code of no campaign.
    pub campaign: Option<String>,
    pub code: String,
    pub upstreams: Vec<String>,
}

/// A code and its state on every target, as `GET /v1/promo-codes/{code}` shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = CodeRecord)]
pub struct CodeRecordDoc {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub definition: Value,
    pub created_at: String,
    pub deliveries: BTreeMap<String, DeliveryRecordDoc>,
    /// When the code was first revoked (RFC 3339): from then on nothing delivers it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Each target's revocation, by upstream (the same record as a delivery's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, DeliveryRecordDoc>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DeliveryRecord)]
pub struct DeliveryRecordDoc {
    pub status: StatusDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Calls made to the vendor for this code, over every request and job.
    pub attempts: u32,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TargetResultDoc>,
    /// The sync job that last claimed this delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
}

/// The state of a sync job.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = JobState)]
pub enum JobStateDoc {
    Running,
    Done,
    Cancelled,
}

/// A sync job's lasting description.
#[derive(Serialize, ToSchema)]
#[schema(as = JobRecord)]
pub struct JobRecordDoc {
    pub id: i64,
    /// What the job does to each code on each target.
    pub operation: OperationDoc,
    pub state: JobStateDoc,
    pub campaign: String,
    pub targets: Vec<String>,
    /// Where its codes came from ("json", "csv", "ndjson", "generate", "mirror", and a revoke
    /// job's "json" or "campaign").
    pub source: String,
    pub total: u64,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A job's operation.
#[derive(Serialize, ToSchema)]
#[schema(as = Operation)]
#[serde(rename_all = "snake_case")]
pub enum OperationDoc {
    Create,
    Revoke,
}

/// One line of a job's results.
#[derive(Serialize, ToSchema)]
#[schema(as = JobResult)]
pub struct JobResultDoc {
    pub seq: i64,
    pub code: String,
    pub upstream: String,
    pub status: StatusDoc,
    /// What a revoke job's revoke did to the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<RevokeActionDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetErrorDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<WarningDoc>,
}

/// A job as `GET /v1/sync-jobs/{id}` shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = JobStatus)]
pub struct JobStatusDoc {
    #[serde(flatten)]
    pub job: JobRecordDoc,
    pub targets_progress: BTreeMap<String, TargetProgressDoc>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TargetProgress)]
pub struct TargetProgressDoc {
    /// Codes on this target, settled or not.
    pub total: u64,
    /// Codes not yet settled.
    pub pending: u64,
    /// Codes by state.
    pub counts: BTreeMap<StatusDoc, u64>,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Utc;
    use serde_json::{json, Value};

    use crate::domain::code::{CodeConflict, CodeRecord, DeliveryRecord, Holder};
    use crate::domain::delivery::{CreateResponse, ErrorKind, RequestPreview, RevokeResponse, Status, TargetResult};
    use crate::domain::job::{JobRecord, JobResult, JobState};
    use crate::engine::jobs::{JobStatus, TargetProgress};

    /// A schema's properties (through `allOf` and `$ref`) and the required ones.
    fn shape(components: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            return shape(components, &components[name]);
        }
        let mut props: BTreeSet<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut required: BTreeSet<String> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let (p, r) = shape(components, part);
            props.extend(p);
            required.extend(r);
        }
        (props, required)
    }

    /// Every member the type serializes is described, and every required one is there; nested
    /// objects are checked through the schema each property names.
    fn check(components: &Value, schema: &Value, value: &Value, at: &str) {
        if let Some(items) = value.as_array() {
            let item_schema = if schema["$ref"].is_string() {
                schema
            } else {
                &schema["items"]
            };
            for (i, item) in items.iter().enumerate() {
                check(components, item_schema, item, &format!("{at}[{i}]"));
            }
            return;
        }
        let Some(object) = value.as_object() else { return };
        let (props, required) = shape(components, schema);
        if props.is_empty() {
            return; // a free-form object (a definition, a request body)
        }
        for key in object.keys() {
            assert!(
                props.contains(key),
                "{at}.{key} is serialized but not described ({props:?})"
            );
        }
        for key in &required {
            assert!(
                object.contains_key(key),
                "{at}.{key} is described as required but not serialized"
            );
        }
        let resolved = match schema["$ref"].as_str() {
            Some(name) => components[name.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        };
        for (key, member) in object {
            let mut property = resolved["properties"][key].clone();
            for part in resolved["allOf"].as_array().into_iter().flatten() {
                let (p, _) = shape(components, part);
                if p.contains(key) && property.is_null() {
                    let part = match part["$ref"].as_str() {
                        Some(name) => components[name.trim_start_matches("#/components/schemas/")].clone(),
                        None => part.clone(),
                    };
                    property = part["properties"][key].clone();
                }
            }
            // `oneOf: [null, {$ref}]` of an optional member: the reference.
            if let Some(alternatives) = property["oneOf"].as_array() {
                if let Some(r) = alternatives.iter().find(|a| a["$ref"].is_string()) {
                    property = r.clone();
                }
            }
            if property["additionalProperties"].is_object() && member.is_object() {
                for (k, v) in member.as_object().unwrap() {
                    check(
                        components,
                        &property["additionalProperties"],
                        v,
                        &format!("{at}.{key}.{k}"),
                    );
                }
                continue;
            }
            check(components, &property, member, &format!("{at}.{key}"));
        }
    }

    fn full_result() -> TargetResult {
        let mut r = TargetResult::new("loop", Some(promo_adapters::VendorKind::ALL[0]), Status::Failed)
            .with_error(ErrorKind::RateLimited, "slow down")
            .with_field("code");
        let e = r.error.as_mut().unwrap();
        e.http_status = Some(429);
        e.retry_after_secs = Some(2);
        e.retry_at = Some("2026-12-01T00:00:02Z".into());
        r.vendor_id = Some("v1".into());
        r.attempts = 3;
        r.action = Some(promo_adapters::operation::RevokeAction::Archived);
        r.warnings.push(promo_adapters::Warning {
            field: "code".into(),
            message: "lossy".into(),
        });
        r.request = Some(RequestPreview {
            method: "POST".into(),
            url: "http://vendor/promos".into(),
            headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
            body: Some(json!({ "code": "A" })),
        });
        r
    }

    #[test]
    fn mirrors_describe_what_the_types_serialize() {
        let doc = serde_json::to_value(crate::http::openapi::document()).unwrap();
        let components = &doc["components"]["schemas"];
        let by_name = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
        let job = JobRecord {
            operation: crate::domain::request::OpKind::Create,
            id: 7,
            state: JobState::Done,
            campaign: "c".into(),
            targets: vec!["loop".into()],
            source: "json".into(),
            total: 1,
            created_at: Utc::now(),
            finished_at: Some(Utc::now()),
            options: json!({}),
        };
        let samples: Vec<(&str, Value)> = vec![
            (
                "CreateResponse",
                serde_json::to_value(CreateResponse {
                    code: "A".into(),
                    dry_run: false,
                    request_id: Some(1),
                    results: vec![full_result()],
                })
                .unwrap(),
            ),
            (
                "CodeRecord",
                serde_json::to_value(CodeRecord {
                    code: "A".into(),
                    campaign: Some("c".into()),
                    definition: json!({ "code": "A" }),
                    created_at: Utc::now(),
                    revoked_at: Some(Utc::now()),
                    revocations: [(
                        "loop".to_owned(),
                        DeliveryRecord {
                            status: Status::Revoked,
                            vendor_id: None,
                            attempts: 1,
                            updated_at: Utc::now(),
                            result: Some(full_result()),
                            job_id: None,
                        },
                    )]
                    .into(),
                    deliveries: [(
                        "loop".to_owned(),
                        DeliveryRecord {
                            status: Status::Created,
                            vendor_id: Some("v".into()),
                            attempts: 1,
                            updated_at: Utc::now(),
                            result: Some(full_result()),
                            job_id: Some(7),
                        },
                    )]
                    .into(),
                })
                .unwrap(),
            ),
            (
                "JobStatus",
                serde_json::to_value(JobStatus {
                    job: job.clone(),
                    targets_progress: [(
                        "loop".to_owned(),
                        TargetProgress {
                            total: 1,
                            pending: 0,
                            counts: [(Status::Created, 1)].into(),
                            rate_per_second: 5,
                            observed_per_second: Some(4.5),
                            eta_seconds: 0,
                        },
                    )]
                    .into(),
                })
                .unwrap(),
            ),
            (
                "JobResult",
                serde_json::to_value(JobResult {
                    action: None,
                    seq: 1,
                    code: "A".into(),
                    upstream: "loop".into(),
                    status: Status::Failed,
                    vendor_id: Some("v".into()),
                    attempts: 2,
                    error: full_result().error,
                    warnings: full_result().warnings,
                })
                .unwrap(),
            ),
            (
                "RevokeResponse",
                serde_json::to_value(RevokeResponse {
                    code: "A".into(),
                    campaign: Some("c".into()),
                    dry_run: false,
                    delete: false,
                    request_id: Some(1),
                    revoked_at: Some("2026-12-01T00:00:00Z".into()),
                    requested_by: Some("ops".into()),
                    results: vec![full_result()],
                })
                .unwrap(),
            ),
            (
                "LiveResponse",
                serde_json::to_value(crate::domain::live::LiveResponse {
                    code: "A".into(),
                    campaign: Some("c".into()),
                    revoked_at: Some("2026-12-01T00:00:00Z".into()),
                    results: vec![crate::domain::live::LiveResult {
                        upstream: "loop".into(),
                        vendor: Some(promo_adapters::VendorKind::Loop),
                        state: crate::domain::live::LiveState::Active,
                        ledger: Some(Status::Created),
                        vendor_id: Some("v".into()),
                        redemptions: Some(3),
                        differs: vec![promo_adapters::read::Difference {
                            field: "max_redemptions",
                            ledger: json!(5),
                            vendor: json!(7),
                        }],
                        warnings: full_result().warnings,
                        error: full_result().error,
                        attempts: 1,
                    }],
                })
                .unwrap(),
            ),
            (
                "CodeConflict",
                serde_json::to_value(CodeConflict::Revoked {
                    existing: "A".into(),
                    revoked_at: Utc::now(),
                })
                .unwrap(),
            ),
            (
                "CodeConflict",
                serde_json::to_value(CodeConflict::OtherCampaign {
                    held_by: vec![Holder {
                        campaign: Some("other".into()),
                        code: "A".into(),
                        upstreams: vec!["loop".into()],
                    }],
                })
                .unwrap(),
            ),
        ];
        for (name, value) in samples {
            assert!(components[name].is_object(), "{name} is not described");
            check(components, &by_name(name), &value, name);
        }
    }
}
