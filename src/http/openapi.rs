//! The OpenAPI 3.1 description of the API, generated from the handlers' `#[utoipa::path]`
//! annotations and the response types. Served at `GET /openapi.json` and committed as
//! `openapi.json` (regenerate with `cargo run --example openapi > openapi.json`).
//!
//! Requests are validated field by field from JSON (so that every problem is reported at once),
//! not deserialized into types; the request schemas here are therefore written for the
//! description only. So are the mirrors of the `promo-adapters` types that responses carry
//! (that crate does no HTTP and knows nothing of OpenAPI).

use std::sync::OnceLock;

use axum::http::Method;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use axum::extract::State;

use crate::http::api::AppState;
use crate::http::gateway_auth::Need;

/// The description's frame: its info, shared responses and tags. Its operations come from the
/// route table (`crate::http::routes`), where each is registered with its handler.
#[derive(OpenApi)]
#[openapi(
    servers((url = "/", description = "The gateway serving this description")),
    info(
        title = "promo-gateway",
        description = "One API for promotion codes across commerce platforms: a code is validated once, \
translated for every target vendor and delivered to each, with one result per target. Every request \
the gateway refuses as a whole is answered with `application/problem+json` (RFC 9457) listing every \
problem, each with the field at fault and the rule it broke."
    ),
    components(responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        UnsupportedMediaType,
        Unprocessable,
        LedgerUnavailable,
        BodyTimeout
    )),
    tags(
        (name = "promo-codes", description = "Create a code on every target; the ledger's codes"),
        (name = "sync-jobs", description = "Many codes at once, in the background"),
        (name = "operations", description = "Health, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// The description of a gateway with API keys (built once): every guarded operation requires a
/// key with its scope and may answer 401 and 403. This is the committed `openapi.json`.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = described();
        GatewayAuth.modify(&mut doc);
        doc
    })
}

/// The description of a gateway with no API key configured, which checks none: no security
/// scheme, no requirement, no 401 or 403 (a description claiming a key would be untrue there).
pub fn open_document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = described();
        if let Some(components) = doc.components.as_mut() {
            components.responses.remove(Unauthorized::NAME);
            components.responses.remove(Forbidden::NAME);
        }
        // Stated, not left out: a linter (and a reader) then knows no key is wanted.
        for (_, operation) in operations(&mut doc) {
            operation.security = Some(Vec::new());
        }
        doc
    })
}

/// The operations as the route table generates them, built once: by the router that registers
/// them ([`keep_generated`]), or here when no router was built (the `openapi` example, tests).
static GENERATED: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();

fn generated() -> &'static utoipa::openapi::OpenApi {
    GENERATED.get_or_init(|| crate::http::routes::table().into_openapi())
}

/// Keeps the description the router's table generated, so it is not built a second time.
pub(crate) fn keep_generated(doc: utoipa::openapi::OpenApi) {
    let _ = GENERATED.set(doc);
}

/// Every operation of a description, with its method.
fn operations(
    doc: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (Method, &mut utoipa::openapi::path::Operation)> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            (Method::GET, item.get.as_mut()),
            (Method::POST, item.post.as_mut()),
            (Method::PUT, item.put.as_mut()),
            (Method::PATCH, item.patch.as_mut()),
            (Method::DELETE, item.delete.as_mut()),
        ]
        .into_iter()
        .filter_map(|(method, operation)| Some((method, operation?)))
    })
}

/// What an operation of the keyed description needs: what its `security` says. Read from a
/// table built once from the description, since the API-key middleware asks on every request.
pub(crate) fn need_of(method: &Method, path: &str) -> Option<Need> {
    type Needs = std::collections::HashMap<String, Vec<(Method, Need)>>;
    static NEEDS: OnceLock<Needs> = OnceLock::new();
    let needs = NEEDS.get_or_init(|| {
        let mut needs = Needs::new();
        for (path, item) in &document().paths.paths {
            let operations = [
                (Method::GET, item.get.as_ref()),
                (Method::POST, item.post.as_ref()),
                (Method::PUT, item.put.as_ref()),
                (Method::PATCH, item.patch.as_ref()),
                (Method::DELETE, item.delete.as_ref()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let need = match declared_scope(operation) {
                    None => Need::Nothing,
                    Some(scope) => match scope.as_deref().and_then(crate::gateway_auth::Scope::from_name) {
                        Some(scope) => Need::Scope(scope),
                        None => Need::AnyKey,
                    },
                };
                needs.entry(path.clone()).or_default().push((method, need));
            }
        }
        needs
    });
    let method = if method == Method::HEAD { &Method::GET } else { method };
    needs
        .get(path)?
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, need)| *need)
}

/// What an operation's `security` declares: `None` when it needs no key, `Some(None)` when any
/// key will do, else the scope.
fn declared_scope(operation: &utoipa::openapi::path::Operation) -> Option<Option<String>> {
    let requirements = operation.security.as_ref()?;
    // `SecurityRequirement` keeps its map to itself; its serialized form is the standard one.
    let value = serde_json::to_value(requirements).ok()?;
    // `security: []` (or `[{}]`): stated explicitly to need nothing.
    if value
        .as_array()
        .is_none_or(|all| all.iter().all(|r| r.as_object().is_none_or(|o| o.is_empty())))
    {
        return None;
    }
    Some(
        value
            .pointer(&format!("/0/{SECURITY_SCHEME}/0"))
            .and_then(|s| s.as_str())
            .map(str::to_owned),
    )
}

/// The generated description with what utoipa's attributes cannot say: upstream lists hold no
/// name twice (`uniqueItems`), as the gateway checks.
fn described() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::schema::Schema;
    let mut doc = generated().clone();
    // An open route states that it needs nothing (`security: []`), so that a reader or a linter
    // does not take a missing requirement for a forgotten one.
    for (_, operation) in operations(&mut doc) {
        if declared_scope(operation).is_none() {
            operation.security = Some(Vec::new());
        }
    }
    // A partial create (207) holds the code as a full one (201) does: the same links follow.
    if let Some(create) = doc.paths.paths.get_mut("/v1/promo-codes").and_then(|p| p.post.as_mut()) {
        let responses = &mut create.responses.responses;
        let links = match responses.get("201") {
            Some(RefOr::T(created)) => created.links.clone(),
            _ => Default::default(),
        };
        if let Some(RefOr::T(partial)) = responses.get_mut("207") {
            partial.links = links;
        }
    }
    // utoipa 5.5 writes a link's `operationId` as `operation_id`, a name no OpenAPI reader
    // knows; the same value goes under its standard name (an extension map is written as is).
    for (_, operation) in operations(&mut doc) {
        for response in operation.responses.responses.values_mut() {
            let RefOr::T(response) = response else { continue };
            for link in response.links.values_mut() {
                let RefOr::T(link) = link else { continue };
                let id = std::mem::take(&mut link.operation_id);
                if !id.is_empty() {
                    link.extensions
                        .get_or_insert_with(Default::default)
                        .insert("operationId".into(), id.into());
                }
            }
        }
    }
    if let Some(components) = doc.components.as_mut() {
        for (schema, property) in [
            ("PromoCodeRequest", "targets"),
            ("CodesJob", "targets"),
            ("GenerateJob", "targets"),
            ("Mirror", "to"),
        ] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) {
                if let Some(RefOr::T(Schema::Array(array))) = object.properties.get_mut(property) {
                    array.unique_items = true;
                }
            }
        }
        // A discount is one of its two shapes and nothing else (`deny_unknown_fields` does not
        // reach the variants of an untagged enum).
        if let Some(RefOr::T(Schema::OneOf(shapes))) = components.schemas.get_mut("Discount") {
            for shape in &mut shapes.items {
                if let RefOr::T(Schema::Object(object)) = shape {
                    object.additional_properties =
                        Some(Box::new(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
    doc
}

/// This OpenAPI description
///
/// `GET /openapi.json`: the description client generators and linters read.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 description of this API", body = Object),
        (status = 400, response = crate::http::openapi::BadRequest),
    )
)]
pub(crate) async fn openapi_json(
    State(state): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<axum::response::Response, crate::http::error::ApiError> {
    use axum::response::IntoResponse;
    crate::http::api::query(raw.as_deref(), &[])?;
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    Ok((json, state.description.clone()).into_response())
}

/// The description this gateway serves: [`document`] (or, with no API key configured, which
/// checks none, [`open_document`]), with the names its configuration allows listed where a
/// request takes one (`campaign`, `targets`, a mirror's `to`), so that a client generator, a
/// form or a fuzzer offers this gateway's campaigns and upstreams rather than any string.
pub(crate) fn served(
    open: bool,
    campaigns: &std::collections::BTreeSet<String>,
    upstreams: &std::collections::BTreeSet<String>,
) -> axum::body::Bytes {
    let doc = if open { open_document() } else { document() };
    let mut value = serde_json::to_value(doc).expect("the description serializes");
    if let Some(schemas) = value.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) {
        list_names(schemas, campaigns, upstreams);
    }
    serde_json::to_vec(&value).expect("the description serializes").into()
}

fn list_names(
    schemas: &mut serde_json::Map<String, serde_json::Value>,
    campaigns: &std::collections::BTreeSet<String>,
    upstreams: &std::collections::BTreeSet<String>,
) {
    let names = |set: &std::collections::BTreeSet<String>| {
        set.iter().cloned().map(serde_json::Value::String).collect::<Vec<_>>()
    };
    for schema in schemas.values_mut() {
        let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
            continue;
        };
        if let Some(campaign) = properties.get_mut("campaign").filter(|_| !campaigns.is_empty()) {
            let mut allowed = names(campaigns);
            if campaign["type"].as_array().is_some_and(|t| t.contains(&"null".into())) {
                allowed.push(serde_json::Value::Null);
            }
            campaign["enum"] = allowed.into();
        }
        for key in ["targets", "to"] {
            let items = properties.get_mut(key).and_then(|p| p.get_mut("items"));
            if let Some(items) = items.filter(|_| !upstreams.is_empty()) {
                items["enum"] = names(upstreams).into();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway API keys (src/gateway_auth.rs)

/// The name of the security scheme: an API key from `[[server.api_keys]]` as a bearer token.
pub const SECURITY_SCHEME: &str = "api_key";

/// Adds the bearer security scheme, and to every operation that declares the scope it needs
/// (which the middleware reads back, [`need_of`]) the 401 and 403 answers and a line saying so.
struct GatewayAuth;

impl Modify for GatewayAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the config's `[[server.api_keys]]`, sent as `Authorization: Bearer <key>`. \
Each operation lists the scope the key needs (`GET /health` and `GET /openapi.json` need none). A gateway \
with no key configured checks nothing, and then listens only on loopback.",
                    ))
                    .build(),
            ),
        );
        for (_, operation) in operations(openapi) {
            // The scope each operation needs is declared with its route (`security`).
            let Some(scope) = declared_scope(operation) else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            responses.insert("401".into(), Ref::from_response_name(Unauthorized::NAME).into());
            if let Some(scope) = scope {
                responses.insert("403".into(), Ref::from_response_name(Forbidden::NAME).into());
                let needs = format!("Needs an API key with the scope `{scope}`.");
                operation.description = Some(match operation.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
                    _ => needs,
                });
            }
        }
    }
}

/// A 401 or 403 of the API-key middleware: a problem with the `WWW-Authenticate` challenge.
fn auth_problem(description: &str, challenge: &str) -> RefOr<Response> {
    problem_builder(description)
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new().description(Some(challenge)).build(),
        )
        .build()
        .into()
}

/// No API key, or one the gateway does not know.
pub struct Unauthorized;

impl Unauthorized {
    const NAME: &'static str = "Unauthorized";
}

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            Self::NAME,
            auth_problem(
                "No `Authorization: Bearer <key>` header, or a key the gateway does not know (only when `[[server.api_keys]]` are configured)",
                "`Bearer realm=\"promo-gateway\"`, with `error=\"invalid_token\"` when a key was presented (RFC 6750)",
            ),
        )
    }
}

/// A known key without the operation's scope.
pub struct Forbidden;

impl Forbidden {
    const NAME: &'static str = "Forbidden";
}

impl<'r> ToResponse<'r> for Forbidden {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            Self::NAME,
            auth_problem(
                "The API key is valid but lacks the scope this operation needs",
                "`Bearer realm=\"promo-gateway\", error=\"insufficient_scope\", scope=\"<scope>\"` (RFC 6750)",
            ),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Problems (RFC 9457)

/// A request refused as a whole, before any upstream was called (RFC 9457 problem details).
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// A stable name clients can branch on, `urn:promo-gateway:problem:<slug>`.
    #[schema(example = "urn:promo-gateway:problem:invalid-promo-code")]
    #[serde(rename = "type")]
    pub problem_type: String,
    #[schema(example = "Invalid promo code")]
    pub title: String,
    /// The HTTP status of the answer.
    #[schema(example = 422)]
    pub status: u16,
    pub detail: String,
    /// Every problem found, also when there is only one.
    pub errors: Vec<FieldProblemDoc>,
    /// On a 409 code conflict only: what the code clashed with, for clients to branch on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::http::schemas::CodeConflictDoc>)]
    pub conflict: Option<crate::domain::code::CodeConflict>,
}

/// One broken rule: the field (a dotted path into the request, a query parameter or a header)
/// and the rule it broke.
#[derive(Serialize, ToSchema)]
#[schema(as = FieldProblem)]
pub struct FieldProblemDoc {
    #[schema(example = "discount.percent_off")]
    pub field: String,
    #[schema(example = "must be greater than 0 and at most 100")]
    pub rule: String,
}

fn problem(description: &str) -> RefOr<Response> {
    problem_builder(description).build().into()
}

fn problem_builder(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ProblemDoc::name())))
            .build(),
    )
}

macro_rules! problem_response {
    ($name:ident, $description:literal) => {
        #[doc = $description]
        pub struct $name;
        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem($description))
            }
        }
    };
}

problem_response!(
    BadRequest,
    "A body that is not JSON or cannot be read, an unknown, repeated or invalid query parameter, or an invalid Idempotency-Key header"
);
problem_response!(NotFound, "Nothing at this path (an unknown code, request or sync job)");
problem_response!(
    Conflict,
    "The request clashes with the ledger's state: a code held with another definition or case, a create with this Idempotency-Key still in flight, a code held in several campaigns, or a sync job in a state that does not allow this"
);
problem_response!(TooLarge, "The body is larger than the configured limit");
problem_response!(
    UnsupportedMediaType,
    "A Content-Type other than application/json, application/x-ndjson or text/csv"
);
problem_response!(
    Unprocessable,
    "The request is invalid; every field at fault is listed with its rule. Nothing was sent"
);
problem_response!(
    BodyTimeout,
    "The body did not arrive in full within `server.body_read_timeout_ms` of the headers (`server.upload_read_timeout_ms` for a sync job); the connection is closed"
);
problem_response!(
    LedgerUnavailable,
    "The ledger could not be read or written; nothing was sent"
);

// The schemas of promo-adapters types live with the domain types that carry them.
pub use crate::http::schemas::{VendorKindDoc, WarningDoc};

// The schema of `crate::upstream::BreakerState`, kept in the HTTP layer.
/// The circuit breaker's state, as `/health` shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = BreakerState)]
#[serde(rename_all = "snake_case")]
pub enum BreakerStateDoc {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// The cool-down is over: the next call is a trial (others fail fast while it runs).
    HalfOpen,
}

/// `GET /health`'s overall state: `ok` when every upstream is configured, its breaker closed,
/// and not in a Retry-After pause cut to the gateway's maximum (one hour).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A promo code to create on every target. Unknown fields are refused, not ignored.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PromoCodeRequest)]
pub struct PromoCodeRequestDoc {
    /// What the customer types: 1 to 100 characters, no whitespace, control or invisible format
    /// characters (Unicode category Cf); vendors may narrow it. Compared with held codes after
    /// NFKC normalisation and case folding.
    #[schema(
        example = "SPRING-20",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]+$"
    )]
    pub code: String,
    pub discount: DiscountDoc,
    /// A campaign mapping (`mappings/<campaign>.toml`); its upstreams are the default targets.
    #[schema(example = "example")]
    pub campaign: Option<String>,
    /// Configured upstream names, no duplicates; required without a campaign.
    #[schema(min_items = 1)]
    pub targets: Option<Vec<String>>,
    /// `false` creates the code disabled. Default `true`.
    pub active: Option<bool>,
    /// RFC 3339 with offset, from 0001-01-02T00:00:00Z to 9999-12-30T23:59:59Z, no leap second.
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// RFC 3339 with offset, from 0001-01-02T00:00:00Z to 9999-12-30T23:59:59Z, no leap second;
    /// later than `starts_at`.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_redemptions: Option<u32>,
    /// Only a customer's first order may use it. Default `false`.
    pub first_time_only: Option<bool>,
    pub minimum_order: Option<MoneyDoc>,
    pub customer: Option<PartyDoc>,
    pub partner: Option<PartyDoc>,
    pub duration: Option<DurationDoc>,
    pub description: Option<String>,
    /// Free-form key-value pairs for vendors that store them.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub on_unsupported: Option<OnUnsupportedDoc>,
    /// Extra vendor fields per target, merged into that vendor's body; never over a field the
    /// gateway sets.
    #[schema(value_type = Option<std::collections::BTreeMap<String, Object>>)]
    pub passthrough: Option<serde_json::Value>,
}

/// `{ "percent_off": N }` (0 < N ≤ 100, at most 2 decimals) or `{ "amount_off": N, "currency": "USD" }`
/// (N in minor units).
#[derive(Serialize, ToSchema)]
#[schema(as = Discount)]
#[serde(untagged, deny_unknown_fields)]
pub enum DiscountDoc {
    Percent {
        #[schema(exclusive_minimum = 0, maximum = 100, multiple_of = 0.01, example = 20)]
        percent_off: f64,
    },
    Amount {
        #[schema(minimum = 1, maximum = 999_999_999_999_999_u64, example = 500)]
        amount_off: u64,
        /// ISO 4217.
        #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
        currency: String,
    },
}

/// An amount in minor units of an ISO 4217 currency.
#[derive(Serialize, ToSchema)]
#[schema(as = Money)]
pub struct MoneyDoc {
    #[schema(minimum = 1, maximum = 999_999_999_999_999_u64, example = 2500)]
    pub amount: u64,
    #[schema(example = "USD")]
    pub currency: String,
}

/// A customer or partner the code is restricted to.
#[derive(Serialize, ToSchema)]
#[schema(as = Party)]
pub struct PartyDoc {
    #[schema(min_length = 1)]
    pub id: String,
    pub name: Option<String>,
}

/// How long a discount keeps applying to a subscription once redeemed.
#[derive(Serialize, ToSchema)]
#[schema(as = Duration)]
pub struct DurationDoc {
    #[schema(minimum = 1)]
    pub length: u32,
    pub unit: DurationUnitDoc,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DurationUnit)]
#[serde(rename_all = "snake_case")]
pub enum DurationUnitDoc {
    Days,
    Weeks,
    Months,
    Years,
}

/// What to do with a field a target cannot carry: refuse that target (default) or send without it.
#[derive(Serialize, ToSchema)]
#[schema(as = OnUnsupported)]
#[serde(rename_all = "snake_case")]
pub enum OnUnsupportedDoc {
    Refuse,
    SkipField,
}

/// A revoke of the code named in the path. Unknown fields are refused, not ignored; an empty
/// body asks for the defaults.
#[derive(Serialize, ToSchema)]
#[schema(as = RevokeRequest)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequestDoc {
    /// The code's campaign; omitted for a code of no campaign.
    #[schema(example = "example", nullable = false, min_length = 1)]
    pub campaign: Option<String>,
    /// Configured upstream names, no duplicates; default: every upstream the ledger has a
    /// delivery of the code to.
    #[schema(min_items = 1, nullable = false)]
    pub targets: Option<Vec<String>>,
    /// Ask for the hard form: a delete where the vendor documents one. Partnero and Moltin
    /// document only a delete, so they revoke only with `delete: true`.
    #[schema(nullable = false)]
    pub delete: Option<bool>,
}

/// A JSON sync job: a campaign's codes (a list or a generator), a mirror of a campaign's codes
/// to other upstreams, or a revoke of a campaign's codes: exactly one of `codes`, `generate`,
/// `mirror` and `revoke`.
#[derive(Serialize, ToSchema)]
#[schema(as = SyncJobRequest)]
#[serde(untagged)]
pub enum SyncJobRequestDoc {
    Codes(CodesJobDoc),
    Generate(GenerateJobDoc),
    Mirror(MirrorJobDoc),
    Revoke(RevokeJobDoc),
}

// A job's optional members are absent or of their type: `null` is refused, so none is nullable.

/// A job of the codes listed.
#[derive(Serialize, ToSchema)]
#[schema(as = CodesJob)]
#[serde(deny_unknown_fields)]
pub struct CodesJobDoc {
    /// The campaign every code of the job belongs to.
    #[schema(example = "example")]
    pub campaign: String,
    /// Upstream names, no duplicates; default: every upstream the campaign maps.
    #[schema(min_items = 1, nullable = false)]
    pub targets: Option<Vec<String>>,
    /// Promo-code fields every code shares (not `code`, `campaign` or `targets`).
    #[schema(nullable = false)]
    pub template: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(nullable = false)]
    pub on_unsupported: Option<OnUnsupportedDoc>,
    /// Codes: strings, or objects of promo-code fields; each at most `server.max_body_bytes`.
    #[schema(value_type = Vec<Value>, min_items = 1)]
    pub codes: Vec<serde_json::Value>,
}

/// A job of generated codes.
#[derive(Serialize, ToSchema)]
#[schema(as = GenerateJob)]
#[serde(deny_unknown_fields)]
pub struct GenerateJobDoc {
    /// The campaign every code of the job belongs to.
    #[schema(example = "example")]
    pub campaign: String,
    /// Upstream names, no duplicates; default: every upstream the campaign maps.
    #[schema(min_items = 1, nullable = false)]
    pub targets: Option<Vec<String>>,
    /// Promo-code fields every code shares (not `code`, `campaign` or `targets`).
    #[schema(nullable = false)]
    pub template: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(nullable = false)]
    pub on_unsupported: Option<OnUnsupportedDoc>,
    pub generate: GenerateDoc,
}

/// A job that sends a campaign's codes to more upstreams.
#[derive(Serialize, ToSchema)]
#[schema(as = MirrorJob)]
#[serde(deny_unknown_fields)]
pub struct MirrorJobDoc {
    pub mirror: MirrorDoc,
    #[schema(nullable = false)]
    pub on_unsupported: Option<OnUnsupportedDoc>,
}

/// A job that revokes a campaign's codes, as `POST /v1/promo-codes/{code}/revoke` revokes one.
#[derive(Serialize, ToSchema)]
#[schema(as = RevokeJob)]
#[serde(deny_unknown_fields)]
pub struct RevokeJobDoc {
    pub revoke: RevokeJobSpecDoc,
}

/// Which codes of a campaign to revoke, where, and how hard.
#[derive(Serialize, ToSchema)]
#[schema(as = RevokeJobSpec)]
#[serde(deny_unknown_fields)]
pub struct RevokeJobSpecDoc {
    #[schema(example = "example")]
    pub campaign: String,
    /// Codes of the campaign, each once; default: every code the campaign holds.
    #[schema(min_items = 1, nullable = false)]
    pub codes: Option<Vec<String>>,
    /// Upstream names, no duplicates; default: every upstream the campaign maps.
    #[schema(min_items = 1, nullable = false)]
    pub targets: Option<Vec<String>>,
    /// Ask for the hard revoke (a delete) where the vendor has one; as a single revoke's.
    #[schema(nullable = false)]
    pub delete: Option<bool>,
}

/// Codes drawn at random.
#[derive(Serialize, ToSchema)]
#[schema(as = Generate)]
#[serde(deny_unknown_fields)]
pub struct GenerateDoc {
    /// At most 1,000,000, and at most half the codes the pattern makes (27^N).
    #[schema(minimum = 1, maximum = 1_000_000, example = 100)]
    pub count: u64,
    /// One `{random:N}` part (N from 4 to 32) between a fixed prefix and suffix.
    #[schema(example = "SPRING-{random:8}")]
    pub pattern: String,
}

/// Sends a campaign's codes to more upstreams.
#[derive(Serialize, ToSchema)]
#[schema(as = Mirror)]
#[serde(deny_unknown_fields)]
pub struct MirrorDoc {
    pub campaign: String,
    /// Upstream names, no duplicates.
    #[schema(min_items = 1)]
    pub to: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mirror names exactly what the adapters serialize, every kind in their order.
    #[test]
    fn vendor_kinds_match() {
        let doc = serde_json::to_value(<VendorKindDoc as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(doc["type"], "string");
        assert_eq!(
            doc["enum"],
            serde_json::to_value(promo_adapters::VendorKind::ALL).unwrap()
        );
    }

    /// `BreakerStateDoc` describes the upstream's `BreakerState`: both serialize alike.
    #[test]
    fn the_breaker_state_doc_matches_the_upstreams() {
        use crate::upstream::BreakerState;
        for (doc, real) in [
            (BreakerStateDoc::Closed, BreakerState::Closed),
            (BreakerStateDoc::Open, BreakerState::Open),
            (BreakerStateDoc::HalfOpen, BreakerState::HalfOpen),
        ] {
            assert_eq!(serde_json::to_value(doc).unwrap(), serde_json::to_value(real).unwrap());
        }
    }

    /// `WarningDoc` describes the adapters' `Warning`: both serialize alike.
    #[test]
    fn the_warning_doc_matches_the_adapters_warning() {
        let doc = serde_json::to_value(WarningDoc {
            field: "metadata".into(),
            message: "dropped".into(),
        })
        .unwrap();
        let real = serde_json::to_value(promo_adapters::Warning {
            field: "metadata".into(),
            message: "dropped".into(),
        })
        .unwrap();
        assert_eq!(doc, real);
    }
}
