//! The read calls of `shared/vendor-docs/lifecycle/`: each vendor's get-one and list, answered
//! from what the sandbox holds, in the shape and with the paging the document gives. A read
//! changes nothing. A code the account does not hold (never created, deleted, another
//! account's) is a 404 where the call reads one code, and absent from a list.

use serde_json::{json, Map, Value};

use crate::state::State;
use crate::vendors::{error_body, Account, Action, Op};
use crate::{HeldCode, Violation};

/// The largest page the sandbox gives: the bound of every document that names one (Moltin's
/// platform-wide 100, Partnero's range under either of its rules).
const MAX_PAGE: u64 = 100;

/// What a valid read answers: its status and body, or the violations of its query.
pub(crate) fn read(
    vendor: &'static str,
    op: &Op,
    account: &Account,
    query: Option<&str>,
    state: &State,
) -> Result<(u16, Value), Vec<Violation>> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let held: Vec<HeldCode> = state
        .codes(vendor)
        .into_iter()
        .filter(|c| c.account_key == account.key && c.collection == op.collection)
        .collect();
    let target = op.target.as_deref().unwrap_or_default();
    let one = |found: Option<&HeldCode>, shown: &dyn Fn(&HeldCode) -> Value, what: &str| match found {
        Some(c) => (200, shown(c)),
        None => (404, error_body(vendor, "not_found", &format!("{what} not found"), &[])),
    };
    Ok(match (vendor, op.action) {
        // lifecycle/spacebring.md §1: `{ "promocode": <object> }`, by the uuid.
        ("spacebring", Action::Get) => one(
            held.iter().find(|c| c.id == target),
            &|c| json!({ "promocode": promocode(c) }),
            &format!("promocode {target}"),
        ),
        // §2: at least one of couponRef / locationRef; no paging on the promocode list's page.
        ("spacebring", Action::List) => {
            let coupon = param("couponRef");
            let location = param("locationRef");
            if coupon.is_none() && location.is_none() {
                return Err(vec![Violation::new(
                    "query",
                    "required",
                    "send at least one of couponRef and locationRef (lifecycle/spacebring.md §2)",
                )]);
            }
            let codes: Vec<Value> = held
                .iter()
                .filter(|c| coupon.is_none_or(|r| c.request["promocode"]["couponRef"] == r))
                .filter(|c| location.is_none_or(|r| c.answer["promocode"]["locationRef"] == r))
                .map(promocode)
                .collect();
            (200, json!({ "promocodes": codes }))
        }
        // lifecycle/partnero.md §1: `{data: <object with coupon>, status: 1}`, by the code word.
        ("partnero", Action::Get) => one(
            held.iter().find(|c| c.code == target),
            &|c| {
                let mut object = promotion_code(c);
                object["coupon"] = json!({
                    "name": c.request["coupon_uuid"],
                    "uuid_code": c.request["coupon_uuid"],
                    "active": true,
                });
                json!({ "data": object, "status": 1 })
            },
            &format!("promotion code {target:?}"),
        ),
        // §2: `limit` and `page` (default 1), `links.next` null on the last page, no totals.
        ("partnero", Action::List) => {
            let limit = number(param("limit"), "limit", 15, 10..=MAX_PAGE)?;
            let page = number(param("page"), "page", 1, 1..=u64::MAX)?;
            let skip = usize::try_from((page - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
            let items: Vec<Value> = held
                .iter()
                .skip(skip)
                .take(limit as usize)
                .map(promotion_code)
                .collect();
            let more = held.len() > skip.saturating_add(items.len());
            let link = |p: u64| format!("https://api.partnero.com/v1/promotion-codes?page={p}");
            (
                200,
                json!({
                    "data": items,
                    "links": {
                        "first": link(1),
                        "last": null,
                        "prev": if page > 1 { json!(link(page - 1)) } else { Value::Null },
                        "next": if more { json!(link(page + 1)) } else { Value::Null },
                    },
                    "meta": {
                        "current_page": page,
                        "from": skip + 1,
                        "to": skip + items.len(),
                        "per_page": limit,
                        "path": "https://api.partnero.com/v1/promotion-codes",
                    },
                    "status": 1,
                }),
            )
        }
        // lifecycle/moltin.md §2, the current shape: codes nested in `data[].data.codes[]`,
        // `page[limit]` (at most 100, default 25) and `page[offset]`; an unknown promotion is a
        // 404 as on the delete calls.
        ("moltin", Action::List) => {
            if !state.knows(vendor, &account.key, &op.collection) {
                let body =
                    json!({ "errors": [ { "status": 404, "title": "Not Found", "detail": "promotion not found" } ] });
                return Ok((404, body));
            }
            let limit = number(param("page[limit]"), "page[limit]", 25, 1..=MAX_PAGE)?;
            let offset = number(param("page[offset]"), "page[offset]", 0, 0..=10_000)?;
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            let codes: Vec<Value> = held.iter().skip(skip).take(limit as usize).map(moltin_code).collect();
            let total = held.len() as u64;
            let pages = total.div_ceil(limit).max(1);
            (
                200,
                json!({
                    "data": [ { "data": { "codes": codes } } ],
                    "links": { "current": null, "first": null, "last": null, "next": null, "prev": null },
                    "meta": {
                        "page": { "current": offset / limit + 1, "limit": limit, "offset": offset, "total": pages },
                        "results": { "total": total },
                    },
                }),
            )
        }
        // lifecycle/limio.md §1: the object, with the data of its latest update.
        ("limio", Action::Get) => one(
            held.iter().find(|c| c.id == target),
            &|c| {
                json!({
                    "id": c.id,
                    "name": c.request["name"],
                    "status": "active",
                    "record_type": c.collection,
                    "service": "limio",
                    "data": c.request["data"],
                })
            },
            &format!("object {target}"),
        ),
        // lifecycle/loop.md §2: the active codes, no paging.
        ("loop", Action::List) => {
            let promos: Vec<Value> = held
                .iter()
                .filter(|c| c.answer["active"] == true)
                .map(|c| c.answer.clone())
                .collect();
            (200, json!({ "promos": promos }))
        }
        _ => unreachable!("{vendor} has no {:?} call", op.action),
    })
}

/// A query number within its documented range, or its default when absent.
fn number(
    value: Option<&str>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Vec<Violation>> {
    let Some(text) = value else { return Ok(default) };
    match text.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(vec![Violation::new(
            format!("query:{name}"),
            "range",
            format!(
                "{name}={text}: must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )]),
    }
}

/// A Spacebring promocode object: the create's answer, as archived since (`archiveDate`, null
/// while live, as §1's example shows it).
fn promocode(c: &HeldCode) -> Value {
    let mut object = c.answer["promocode"].clone();
    if object.get("archiveDate").is_none() {
        object["archiveDate"] = Value::Null;
    }
    object
}

/// A Partnero promotion-code object (§"The promotion-code object"): the create's fields, an
/// empty map or party as `[]`, a filled party as an object.
fn promotion_code(c: &HeldCode) -> Value {
    let r = &c.request;
    let get = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let flag = |k: &str| r.get(k).cloned().unwrap_or(Value::Bool(false));
    let map = |k: &str| match r.get(k) {
        Some(Value::Object(o)) if !o.is_empty() => Value::Object(o.clone()),
        _ => json!([]),
    };
    json!({
        "code": c.code,
        "first_time_order": flag("first_time_order"),
        "limit_to_specific_partner": flag("limit_to_specific_partner"),
        "coupon_specific_partners": map("coupon_specific_partners"),
        "limit_to_specific_customer": flag("limit_to_specific_customer"),
        "coupon_specific_customers": map("coupon_specific_customers"),
        "minimum_order_status": flag("minimum_order_status"),
        "minimum_order_value": r.get("minimum_order_value").cloned().unwrap_or(json!(0)),
        "expiration_date_status": flag("expiration_date_status"),
        "expiration_date_value": get("expiration_date_value"),
        "redemption_times_status": flag("redemption_times_status"),
        "redemption_times_value": get("redemption_times_value"),
        "metadata": map("metadata"),
        "additional_info": [],
        "times_redeemed": 0,
    })
}

/// A Moltin promotion-code record (§"The promotion-code record"): `uses` is what is left,
/// `max_uses` the cap; no code has been used in the sandbox.
fn moltin_code(c: &HeldCode) -> Value {
    let mut record = Map::new();
    record.insert("code".into(), json!(c.code));
    if let Some(cap) = c.request.get("uses") {
        record.insert("uses".into(), cap.clone());
        record.insert("max_uses".into(), cap.clone());
    }
    record.insert(
        "user".into(),
        c.request.get("user").cloned().unwrap_or_else(|| json!("")),
    );
    record.insert("created_by".into(), json!("sandbox"));
    record.insert("meta".into(), json!({ "timestamps": { "created_at": c.created_at } }));
    Value::Object(record)
}
