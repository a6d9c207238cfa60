//! Each simulated vendor as its document describes it: its create operation (path, schema),
//! how it authenticates, and its answers (error shape and status, success body).

use axum::http::Method;
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::state::State;
use crate::{credentials, HeldCode, Revocation, Violation};

/// How a vendor's document says calls authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthRule {
    /// `Authorization: Bearer <token>` (Partnero's API key, Moltin's and Loop's tokens).
    Bearer,
    /// Bearer JWT from the OAuth flow (Limio): the sandbox must have issued it.
    IssuedJwt,
    /// Basic, or an OAuth2 bearer with a `spacebring-network-id` header, a uuid (Spacebring).
    BasicOrBearerWithNetwork,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Vendor {
    pub name: &'static str,
    pub auth: AuthRule,
    /// The status of a refusal for a bad request: the document's (400), or 422 where it gives
    /// none.
    pub invalid_status: u16,
}

pub(crate) const VENDORS: &[Vendor] = &[
    Vendor {
        name: "spacebring",
        auth: AuthRule::BasicOrBearerWithNetwork,
        invalid_status: 400,
    },
    Vendor {
        name: "partnero",
        auth: AuthRule::Bearer,
        invalid_status: 422,
    },
    Vendor {
        name: "moltin",
        auth: AuthRule::Bearer,
        invalid_status: 422,
    },
    Vendor {
        name: "limio",
        auth: AuthRule::IssuedJwt,
        invalid_status: 400,
    },
    Vendor {
        name: "loop",
        auth: AuthRule::Bearer,
        invalid_status: 400,
    },
];

pub(crate) fn find(name: &str) -> Option<&'static Vendor> {
    VENDORS.iter().find(|v| v.name == name)
}

/// What a documented call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    /// Spacebring's one-way archive.
    Archive,
    /// Limio v2's update: `data.status: false` deactivates the code, `true` switches it back on.
    Update,
    /// Partnero's, Moltin's (one code or, without a code in the path, many) and Limio v2's.
    Delete,
    /// A read of one code: Spacebring's, Partnero's and Limio v2's get-one.
    Get,
    /// A list of codes: Spacebring's (by coupon), Partnero's, Moltin's (a promotion's), Loop's.
    List,
}

/// What a call's document says of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyRule {
    /// A JSON body, judged by this schema.
    Required(&'static str),
    /// None, or a JSON body judged by this schema (Spacebring's archive, whose client rule
    /// falls back to `{}`).
    Optional(&'static str),
    /// No body at all.
    Absent,
}

/// A documented call, matched on the method and the path under the vendor's root.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub method: Method,
    pub action: Action,
    pub body: BodyRule,
    /// Where its codes are held apart from others of the same name.
    pub collection: String,
    /// Moltin's promotion id, from the path.
    pub promotion: Option<String>,
    /// The code the path names, percent-decoded: Spacebring's id, Moltin's code, Limio's
    /// object id.
    pub target: Option<String>,
}

impl Op {
    fn new(method: Method, action: Action, body: BodyRule, collection: &str) -> Self {
        Self {
            method,
            action,
            body,
            collection: collection.to_owned(),
            promotion: None,
            target: None,
        }
    }

    fn on(mut self, target: String) -> Self {
        self.target = Some(target);
        self
    }
}

/// One path segment, percent-decoded; `None` when empty, not UTF-8 or badly encoded.
fn segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => return None,
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// The calls at `path` (the vendor's own path) of `vendor`, one per documented method.
pub(crate) fn ops(vendor: &str, path: &str) -> Vec<Op> {
    use BodyRule::{Absent, Optional, Required};
    let create = |schema, collection| vec![Op::new(Method::POST, Action::Create, Required(schema), collection)];
    let get = |collection| Op::new(Method::GET, Action::Get, Absent, collection);
    let list = |collection| Op::new(Method::GET, Action::List, Absent, collection);
    match (vendor, path) {
        ("spacebring", "/discounts/promocodes/v1") => {
            let mut ops = create("spacebring-create-promocode", "promocodes");
            ops.push(list("promocodes"));
            ops
        }
        ("spacebring", _) => {
            let Some(rest) = path.strip_prefix("/discounts/promocodes/v1/") else {
                return Vec::new();
            };
            match rest.strip_suffix("/archive") {
                Some(id) => segment(id)
                    .map(|id| {
                        let schema = Optional("spacebring-archive-promocode");
                        vec![Op::new(Method::PUT, Action::Archive, schema, "promocodes").on(id)]
                    })
                    .unwrap_or_default(),
                None => segment(rest)
                    .map(|id| vec![get("promocodes").on(id)])
                    .unwrap_or_default(),
            }
        }
        ("partnero", "/v1/promotion-codes") => {
            let mut ops = create("partnero-create-promotion-code", "promotion-codes");
            let delete = Required("partnero-delete-promotion-code");
            ops.push(Op::new(Method::DELETE, Action::Delete, delete, "promotion-codes"));
            ops.push(list("promotion-codes"));
            ops
        }
        ("partnero", _) => path
            .strip_prefix("/v1/promotion-codes/")
            .and_then(segment)
            .map(|code| vec![get("promotion-codes").on(code)])
            .unwrap_or_default(),
        ("limio", "/objects/limio/promo_codes_v2") => create("limio-create-promo-code-v2", "promo_code_v2"),
        ("limio", "/objects/limio/promo_codes_v3") => create("limio-create-promo-code-v3", "promo_code_v3"),
        // lifecycle/limio.md §6: no call after create is documented for v3, so its paths are unknown.
        ("limio", _) => path
            .strip_prefix("/objects/limio/promo_codes_v2/")
            .and_then(segment)
            .map(|id| {
                let update = Required("limio-update-promo-code-v2");
                vec![
                    Op::new(Method::PUT, Action::Update, update, "promo_code_v2").on(id.clone()),
                    Op::new(Method::DELETE, Action::Delete, Absent, "promo_code_v2").on(id.clone()),
                    get("promo_code_v2").on(id),
                ]
            })
            .unwrap_or_default(),
        ("loop", "/v1/admin/promos") => {
            let mut ops = create("loop-create-promo", "promos");
            ops.push(list("promos"));
            ops
        }
        ("moltin", _) => {
            let Some(rest) = path.strip_prefix("/v2/promotions/") else {
                return Vec::new();
            };
            let (id, codes) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(id) = segment(id) else { return Vec::new() };
            let collection = format!("promotion {id}");
            let at = |mut op: Op| {
                op.promotion = Some(id.clone());
                op
            };
            match codes.strip_prefix("codes") {
                Some("") => vec![
                    at(Op::new(
                        Method::POST,
                        Action::Create,
                        Required("moltin-create-promotion-codes"),
                        &collection,
                    )),
                    at(Op::new(
                        Method::DELETE,
                        Action::Delete,
                        Required("moltin-delete-promotion-codes"),
                        &collection,
                    )),
                    at(list(&collection)),
                ],
                Some(code) => match code.strip_prefix('/').and_then(segment) {
                    Some(code) => vec![at(Op::new(Method::DELETE, Action::Delete, Absent, &collection)).on(code)],
                    None => Vec::new(),
                },
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// Who is calling: the key codes are held under, and how it is shown.
pub(crate) struct Account {
    pub key: String,
    pub shown: String,
    /// Spacebring's network, when the call named one.
    pub network: Option<String>,
}

/// A credential as the listing shows it: a fingerprint (FNV-1a), which tells accounts apart
/// without printing a token someone may have pasted from a real vendor.
fn shorten(secret: &str) -> String {
    let hash = secret.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("#{:08x}", hash >> 32)
}

/// Checks the `Authorization` header (and Spacebring's network id) as the vendor's document
/// asks; the account it names, or every rule it broke.
pub(crate) fn authenticate(
    vendor: &Vendor,
    headers: &axum::http::HeaderMap,
    state: &State,
) -> Result<Account, Vec<Violation>> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    let at = "header:Authorization";
    let Some(value) = header("authorization") else {
        return Err(vec![Violation::new(
            at,
            "required",
            match vendor.auth {
                AuthRule::BasicOrBearerWithNetwork => {
                    "missing: send `Basic <base64 key:secret>` or `Bearer <token>` with spacebring-network-id"
                }
                _ => "missing: send `Bearer <token>`",
            },
        )]);
    };
    let (scheme, credential) = value.split_once(' ').unwrap_or((value.as_str(), ""));
    let credential = credential.trim();
    let network = header("spacebring-network-id");
    let mut violations = Vec::new();
    if let Some(id) = &network {
        if uuid::Uuid::try_parse(id).is_err() || id.len() != 36 {
            violations.push(Violation::new(
                "header:spacebring-network-id",
                "format",
                format!("{id:?} is not a \"uuid\""),
            ));
        }
    }
    let bearer = scheme.eq_ignore_ascii_case("bearer");
    let basic = scheme.eq_ignore_ascii_case("basic");
    let account = match (vendor.auth, bearer, basic) {
        (_, true, _) if credential.is_empty() => {
            violations.push(Violation::new(at, "shape", "`Bearer` without a token"));
            None
        }
        (AuthRule::Bearer, true, _) => Some(match state.issued(credential) {
            Some(issued) if issued.vendor == vendor.name => Account {
                key: issued.account.clone(),
                shown: issued.account,
                network: None,
            },
            _ => Account {
                key: format!("token:{credential}"),
                shown: format!("token {}", shorten(credential)),
                network: None,
            },
        }),
        (AuthRule::IssuedJwt, true, _) => {
            let jwt = credential.split('.').count() == 3
                && credential.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !jwt {
                violations.push(Violation::new(
                    at,
                    "shape",
                    "the bearer token is not a JWT (three base64url parts joined by `.`)",
                ));
                None
            } else if credential == credentials::TOKEN {
                Some(Account {
                    key: "sandbox".into(),
                    shown: "sandbox".into(),
                    network: None,
                })
            } else {
                match state.issued(credential) {
                    Some(issued) if issued.vendor == vendor.name => Some(Account {
                        key: issued.account.clone(),
                        shown: issued.account,
                        network: None,
                    }),
                    _ => {
                        violations.push(Violation::new(
                            at,
                            "auth",
                            format!(
                                "the bearer token was not issued by this sandbox's /{}/oauth2/token, or has expired",
                                vendor.name
                            ),
                        ));
                        None
                    }
                }
            }
        }
        (AuthRule::BasicOrBearerWithNetwork, true, _) => match &network {
            None => {
                violations.push(Violation::new(
                    "header:spacebring-network-id",
                    "required",
                    "required when using bearer token authentication",
                ));
                None
            }
            Some(id) => {
                let (key, shown) = match state.issued(credential) {
                    Some(issued) if issued.vendor == vendor.name => (issued.account.clone(), issued.account),
                    _ => (format!("token:{credential}"), format!("token {}", shorten(credential))),
                };
                Some(Account {
                    key: format!("{key} network:{id}"),
                    shown: format!("{shown}, network {id}"),
                    network: Some(id.clone()),
                })
            }
        },
        (AuthRule::BasicOrBearerWithNetwork, false, true) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credential)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => Some(Account {
                    key: format!("basic:{user}"),
                    shown: format!("basic {user}"),
                    network: network.clone(),
                }),
                _ => {
                    violations.push(Violation::new(
                        at,
                        "shape",
                        "Basic credentials must be base64 of `key:secret`, both non-empty",
                    ));
                    None
                }
            }
        }
        _ => {
            violations.push(Violation::new(
                at,
                "scheme",
                match vendor.auth {
                    AuthRule::BasicOrBearerWithNetwork => {
                        format!("scheme {scheme:?}: the document takes Basic or Bearer")
                    }
                    _ => format!("scheme {scheme:?}: the document takes Bearer"),
                },
            ));
            None
        }
    };
    match account {
        Some(account) if violations.is_empty() => Ok(account),
        _ => Err(violations),
    }
}

/// Rules of the document a schema cannot state.
pub(crate) fn more_violations(op: &Op, body: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let create = op.action == Action::Create;
    if let Some(record_type) = Some(op.collection.as_str()).filter(|c| create && c.starts_with("promo_code_v")) {
        // "The object id. This is the record_type and name concatenated such as promo_code_v2-abc123."
        if let (Some(name), Some(id)) = (body["name"].as_str(), body["id"].as_str()) {
            let expected = format!("{record_type}-{name}");
            if id != expected {
                out.push(Violation::new(
                    "/id",
                    "record_type-name",
                    format!("{id:?} is not the record type and name concatenated, {expected:?}"),
                ));
            }
        }
    }
    out
}

/// The codes a valid request creates.
pub(crate) fn names(vendor: &str, body: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    match vendor {
        "spacebring" => s(&body["promocode"]["code"]).into_iter().collect(),
        "partnero" => vec![s(&body["code"]).unwrap_or_else(|| {
            // "Promotion code (auto-generated if not provided)".
            let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
            format!("PROMO{}", &id[..8])
        })],
        "moltin" => body["data"]["codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| s(&c["code"]))
            .collect(),
        "limio" => s(&body["data"]["promoCode"]).into_iter().collect(),
        "loop" => s(&body["code"]).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The document's success answer for a valid request, filled in from it, and the codes held,
/// each with the answer that shows it (a Moltin code, which create answers with its promotion,
/// with its own record).
pub(crate) fn created(
    vendor: &str,
    op: &Op,
    account: &Account,
    body: &Value,
    codes: &[String],
    call: u64,
) -> (u16, Value, Vec<HeldCode>) {
    let (status, answer, mut held) = create_answer(vendor, op, account, body, codes, call);
    for code in &mut held {
        code.answer = if vendor == "moltin" {
            code.request.clone()
        } else {
            answer.clone()
        };
    }
    (status, answer, held)
}

fn create_answer(
    vendor: &str,
    op: &Op,
    account: &Account,
    body: &Value,
    codes: &[String],
    call: u64,
) -> (u16, Value, Vec<HeldCode>) {
    let at = now();
    let held = |code: &str, id: String, request: Value| HeldCode {
        code: code.to_owned(),
        collection: op.collection.clone(),
        account: account.shown.clone(),
        id,
        call,
        created_at: at.clone(),
        request,
        answer: Value::Null,
        revoked: None,
        account_key: account.key.clone(),
    };
    let code = codes.first().cloned().unwrap_or_default();
    match vendor {
        "spacebring" => {
            let p = &body["promocode"];
            let id = uuid::Uuid::new_v4().to_string();
            let mut expiration = Map::new();
            expiration.insert("enabled".into(), p["expiration"]["enabled"].clone());
            if let Some(date) = p["expiration"].get("date") {
                expiration.insert("date".into(), date.clone());
            }
            let answer = json!({
                "promocode": {
                    "id": id,
                    "code": code,
                    "couponRef": p["couponRef"],
                    "createDate": at,
                    "expiration": expiration,
                    "limitByFirstPurchase": p["limitByFirstPurchase"],
                    "limitedRedemption": {
                        "enabled": p["limitedRedemption"]["enabled"],
                        "usage": 0,
                        "value": p["limitedRedemption"]["value"],
                    },
                    "networkRef": account.network.clone().unwrap_or_else(|| SANDBOX_NETWORK.into()),
                }
            });
            (201, answer, vec![held(&code, id, body.clone())])
        }
        "partnero" => {
            let get = |k: &str| body.get(k).cloned();
            let flag = |k: &str| get(k).unwrap_or(Value::Bool(false));
            let list = |k: &str| get(k).map_or_else(|| json!([]), |v| json!([v]));
            let answer = json!({
                "data": {
                    "code": code,
                    "first_time_order": flag("first_time_order"),
                    "limit_to_specific_partner": flag("limit_to_specific_partner"),
                    "coupon_specific_partners": list("coupon_specific_partners"),
                    "limit_to_specific_customer": flag("limit_to_specific_customer"),
                    "coupon_specific_customers": list("coupon_specific_customers"),
                    "minimum_order_status": flag("minimum_order_status"),
                    "minimum_order_value": get("minimum_order_value").unwrap_or(Value::Null),
                    "expiration_date_status": flag("expiration_date_status"),
                    "expiration_date_value": get("expiration_date_value").unwrap_or(Value::Null),
                    "redemption_times_status": flag("redemption_times_status"),
                    "redemption_times_value": get("redemption_times_value").unwrap_or(Value::Null),
                    "metadata": get("metadata").unwrap_or_else(|| json!([])),
                    "additional_info": [],
                    "times_redeemed": 0
                },
                "status": 1,
                "message": "Promotion code created in the app successfully."
            });
            (200, answer, vec![held(&code, code.clone(), body.clone())])
        }
        "moltin" => {
            let promotion = op.promotion.clone().unwrap_or_default();
            // The document's example answer is the promotion the codes joined; only its id is
            // the request's.
            let answer = json!({
                "data": {
                    "type": "promotion",
                    "id": promotion,
                    "name": "Promo #1",
                    "description": "Initial Promotion",
                    "enabled": true,
                    "promotion_type": "fixed_discount",
                    "schema": { "currencies": [
                        { "currency": "USD", "amount": 900 },
                        { "currency": "GBP", "amount": 1100 }
                    ] },
                    "start": "2017-11-13T00:00:00Z",
                    "end": "2019-11-13T00:00:00Z",
                    "created_at": "2018-05-10T15:25:21.164Z",
                    "updated_at": at
                }
            });
            let items = body["data"]["codes"].as_array().cloned().unwrap_or_default();
            let held = items
                .into_iter()
                .zip(codes)
                .map(|(item, code)| HeldCode {
                    collection: format!("promotion {promotion}"),
                    ..held(code, code.clone(), item)
                })
                .collect();
            (201, answer, held)
        }
        "limio" => {
            let answer = json!({
                "id": body["id"],
                "name": body["name"],
                "status": "active",
                "record_type": op.collection,
                "service": "objects",
                "data": body["data"],
            });
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            (200, answer, vec![held(&code, id, body.clone())])
        }
        _ => {
            let id = format!("promo_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let or_null = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
            let answer = json!({
                "id": id,
                "code": code,
                "active": true,
                "percent_off": or_null("percent_off"),
                "amount_off": or_null("amount_off"),
                "currency": Value::Null,
                "expires_at": or_null("valid_until"),
                "max_redemptions": or_null("max_redemptions"),
                "times_redeemed": 0,
                "created_at": at,
            });
            (201, answer, vec![held(&code, id, body.clone())])
        }
    }
}

/// The document's answer to a valid call after create that revokes (or, for Limio's update,
/// changes) a code of the caller's account, and the change made to what is held. A code the
/// account does not hold (never created, deleted, another account's) answers 404, which is what
/// every lifecycle document says of a missing code or leaves to its API-wide status table.
pub(crate) fn revoke(vendor: &'static str, op: &Op, account: &Account, body: &Value, state: &State) -> (u16, Value) {
    let target = op.target.clone().unwrap_or_default();
    let revocation = |what: &'static str| Revocation {
        state: what,
        at: now(),
        call: state.next_call(),
    };
    match (vendor, op.action) {
        // lifecycle/spacebring.md §3: `{ "promocode": <object> }` after archiving, `archiveDate`
        // set. A second archive is not documented: a PUT is idempotent (RFC 9110 §9.2.2), so it
        // answers the same object, with the first archive's date.
        ("spacebring", Action::Archive) => {
            let archived = state.update(
                vendor,
                &account.key,
                |c| c.id == target,
                |c| {
                    if c.revoked.is_none() {
                        let r = revocation("archived");
                        c.answer["promocode"]["archiveDate"] = r.at.clone().into();
                        c.revoked = Some(r);
                    }
                    c.answer.clone()
                },
            );
            archived.map_or_else(
                || not_found(vendor, &format!("promocode {target} not found")),
                |a| (200, a),
            )
        }
        // lifecycle/partnero.md §5: the pair (code, coupon.uuid_code) names the code; a pair
        // naming another coupon's code is undocumented, and answers as a missing code.
        ("partnero", Action::Delete) => {
            let code = body["code"].as_str().unwrap_or_default();
            let coupon = &body["coupon"]["uuid_code"];
            let pick = |c: &HeldCode| c.code == code && c.request["coupon_uuid"] == *coupon;
            match state.delete(vendor, &account.key, &[pick], &revocation("deleted")) {
                Ok(_) => (200, json!({ "data": { "status": 1, "message": "deleted" } })),
                Err(_) => not_found(vendor, &format!("promotion code {code:?} of coupon {coupon} not found")),
            }
        }
        // lifecycle/moltin.md §6 and §6b: 204 with no body. A missing promotion is §6's 404
        // `promotion not found` (the sandbox knows a promotion by the codes created on it); a
        // missing code, undocumented, is a 404 of its own, and in a bulk call fails the whole
        // call, as a create batch does: nothing is deleted.
        ("moltin", Action::Delete) => {
            let mut codes: Vec<String> = match &op.target {
                Some(code) => vec![code.clone()],
                None => body["data"]["codes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["code"].as_str().map(str::to_owned))
                    .collect(),
            };
            // Listing a code twice deletes it once.
            let mut seen = std::collections::HashSet::new();
            codes.retain(|c| seen.insert(c.clone()));
            let picks: Vec<_> = codes
                .iter()
                .map(|code| move |c: &HeldCode| c.collection == op.collection && c.code == *code)
                .collect();
            match state.delete(vendor, &account.key, &picks, &revocation("deleted")) {
                Ok(_) => (204, Value::Null),
                Err(_) if !state.knows(vendor, &account.key, &op.collection) => {
                    not_found(vendor, "promotion not found")
                }
                Err(missing) => {
                    let names: Vec<&str> = missing.iter().map(|&i| codes[i].as_str()).collect();
                    not_found(vendor, &format!("promotion code not found: {}", names.join(", ")))
                }
            }
        }
        // lifecycle/limio.md §3/§4: the object's data is replaced by the one sent (the schema
        // made it complete), and `status: false` is the soft revoke; the answer is
        // `{id, sort_key, data}`. A second deactivate changes nothing, and keeps the first's date.
        ("limio", Action::Update) => {
            let data = body["data"].clone();
            let active = data["status"].as_bool().unwrap_or(true);
            let updated = state.update(
                vendor,
                &account.key,
                |c| c.collection == op.collection && c.id == target,
                |c| {
                    c.request["data"] = data.clone();
                    c.answer["data"] = data.clone();
                    match (active, &c.revoked) {
                        (true, _) => c.revoked = None,
                        (false, None) => c.revoked = Some(revocation("deactivated")),
                        (false, Some(_)) => {}
                    }
                },
            );
            match updated {
                Some(()) => (
                    200,
                    json!({ "id": target, "sort_key": format!("object/{}", op.collection), "data": data }),
                ),
                None => not_found(vendor, &format!("object {target} not found")),
            }
        }
        // lifecycle/limio.md §5.
        ("limio", Action::Delete) => {
            let pick = |c: &HeldCode| c.collection == op.collection && c.id == target;
            match state.delete(vendor, &account.key, &[pick], &revocation("deleted")) {
                Ok(_) => {
                    let request_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
                    let answer =
                        json!({ "httpStatusCode": 200, "requestId": request_id, "attempts": 1, "totalRetryDelay": 0 });
                    (200, answer)
                }
                Err(_) => not_found(vendor, &format!("object {target} not found")),
            }
        }
        _ => unreachable!("{vendor} has no {:?} call", op.action),
    }
}

/// A 404 in the vendor's error shape: Moltin's JSON:API `errors` (§6's `Not Found` entry), the
/// others' `{message}` (with Spacebring's `type`).
fn not_found(vendor: &str, detail: &str) -> (u16, Value) {
    let body = match vendor {
        "moltin" => json!({ "errors": [ { "status": 404, "title": "Not Found", "detail": detail } ] }),
        _ => error_body(vendor, "not_found", detail, &[]),
    };
    (404, body)
}

/// The network a Basic-authenticated Spacebring call's answer names (the account's own).
const SANDBOX_NETWORK: &str = "00000000-0000-4000-8000-000000000000";

/// The vendor's error body: `message` (every violation, joined) and `violations`, plus the
/// members its document names (Spacebring's `type`, Loop's `error`).
pub(crate) fn error_body(vendor: &str, kind: &str, message: &str, violations: &[Violation]) -> Value {
    let mut body = Map::new();
    match vendor {
        "spacebring" => {
            body.insert("type".into(), kind.into());
        }
        "loop" => {
            body.insert("error".into(), kind.into());
        }
        _ => {}
    }
    body.insert("message".into(), message.into());
    if !violations.is_empty() {
        body.insert(
            "violations".into(),
            serde_json::to_value(violations).expect("serializable"),
        );
    }
    Value::Object(body)
}

/// Every violation in one line: `pointer: message (rule)`.
pub(crate) fn summary(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            let at = if v.pointer.is_empty() { "body" } else { &v.pointer };
            format!("{at}: {} ({})", v.message, v.rule)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
