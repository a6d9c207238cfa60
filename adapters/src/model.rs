//! The unified promo-code model, v1, and its validation.
//!
//! A merchant describes a code once in this shape; adapters translate it per vendor. Validation
//! reads the request as a JSON object key by key instead of through `#[serde(deny_unknown_fields)]`
//! so that every problem is reported at once, each with the field and the rule it broke: a
//! client fixing errors one round trip at a time is the first thing people hate about an API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::money::{Currency, Money, Percent, MAX_AMOUNT};

/// What a code takes off: a percentage, or a fixed amount in one currency. Never both, never
/// neither: the enum is the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    Percent(Percent),
    Amount(Money),
}

impl fmt::Display for Discount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discount::Percent(p) => write!(f, "{p} off"),
            Discount::Amount(m) => write!(f, "{m} off"),
        }
    }
}

/// The wire form, shared by requests and mapping files.
#[derive(Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum DiscountWire {
    Percent { percent_off: Percent },
    Amount { amount_off: u64, currency: Currency },
}

impl Serialize for Discount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Discount::Percent(percent_off) => DiscountWire::Percent { percent_off },
            Discount::Amount(m) => DiscountWire::Amount {
                amount_off: m.amount,
                currency: m.currency,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Discount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let mut problems = Problems::default();
        let discount = parse_discount(&value, "discount", &mut problems);
        match discount {
            Some(discount) if problems.is_empty() => Ok(discount),
            _ => Err(serde::de::Error::custom(problems.to_string())),
        }
    }
}

/// Who a code is restricted to (a customer) or attributed to (a partner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// The vendor-side id of the customer or partner.
    pub id: String,
    /// Full name; some vendors (Partnero) require it alongside the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How long a discount keeps applying to a subscription once redeemed. Absent means the
/// vendor's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountDuration {
    pub length: u32,
    pub unit: DurationUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationUnit {
    Days,
    Weeks,
    Months,
    Years,
}

impl fmt::Display for DiscountDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            DurationUnit::Days => "days",
            DurationUnit::Weeks => "weeks",
            DurationUnit::Months => "months",
            DurationUnit::Years => "years",
        };
        write!(f, "{} {unit}", self.length)
    }
}

/// A validated promotion code: every value here has passed the unified rules, so adapters only
/// decide how (or whether) their vendor can carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoCode {
    /// What the customer types. 1..=100 characters, no whitespace, control or format
    /// characters; vendors may narrow it further. Compared with others by [`code_key`].
    pub code: String,
    /// The campaign whose mapping file (`mappings/<campaign>.toml`) names each vendor's parent.
    pub campaign: Option<String>,
    pub discount: Discount,
    /// `false` creates the code disabled. Defaults to `true`.
    pub active: bool,
    pub starts_at: Option<DateTime<FixedOffset>>,
    pub expires_at: Option<DateTime<FixedOffset>>,
    /// Total redemptions allowed, at least 1.
    pub max_redemptions: Option<u32>,
    /// Only a customer's first order may use it. Defaults to `false`.
    pub first_time_only: bool,
    /// Orders below this amount cannot use the code.
    pub minimum_order: Option<Money>,
    /// Only this customer may use the code.
    pub customer: Option<Party>,
    /// Only this partner (affiliate) may use the code.
    pub partner: Option<Party>,
    pub description: Option<String>,
    /// Free-form key-value pairs passed to vendors that store them.
    pub metadata: Map<String, Value>,
    pub duration: Option<DiscountDuration>,
}

impl PromoCode {
    /// An active code granting `discount`, with no dates, limits or restrictions: the unified
    /// defaults, for codes made in code rather than read from a request (`check-config`'s
    /// sample, tests). Set the other fields on the result.
    pub fn new(code: impl Into<String>, discount: Discount) -> Self {
        PromoCode {
            code: code.into(),
            campaign: None,
            discount,
            active: true,
            starts_at: None,
            expires_at: None,
            max_redemptions: None,
            first_time_only: false,
            minimum_order: None,
            customer: None,
            partner: None,
            description: None,
            metadata: Map::new(),
            duration: None,
        }
    }
}

/// What to do with a field a target cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnsupported {
    /// The target reports `unsupported`, naming the field, and no call is made (the default:
    /// a silently dropped restriction makes a code more generous than asked).
    #[default]
    Refuse,
    /// The target is called without the field and the result lists it as a warning.
    SkipField,
}

/// A request to create one code on several upstreams.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub promo: PromoCode,
    /// Upstream instance names; `None` means "the upstreams the campaign maps".
    pub targets: Option<Vec<String>>,
    pub on_unsupported: OnUnsupported,
    /// Per-target extra fields merged into that vendor's body (never over a field the adapter sets).
    pub passthrough: BTreeMap<String, Map<String, Value>>,
}

/// One broken rule: the field (a dotted path into the request) and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub rule: String,
}

/// Every problem found in a request, in the order met.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            rule: rule.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|p| format!("{}: {}", p.field, p.rule)).collect();
        f.write_str(&parts.join("; "))
    }
}

/// What validation needs to know of the running gateway.
pub struct ValidationContext<'a> {
    /// Configured upstream instance names.
    pub upstreams: &'a BTreeSet<String>,
    /// Campaigns that have a mapping file.
    pub campaigns: &'a BTreeSet<String>,
}

const FIELDS: &[&str] = &[
    "code",
    "campaign",
    "discount",
    "active",
    "starts_at",
    "expires_at",
    "max_redemptions",
    "first_time_only",
    "minimum_order",
    "customer",
    "partner",
    "description",
    "metadata",
    "duration",
    "targets",
    "on_unsupported",
    "passthrough",
];

/// The longest code any supported vendor takes (Partnero's 100); vendors with a lower limit
/// (Loop's 50) refuse longer codes for their target only.
pub const MAX_CODE_LEN: usize = 100;

/// Validates a parsed JSON body. Either a request in which every rule holds, or all problems.
pub fn validate(body: &Value, ctx: &ValidationContext<'_>) -> Result<CreateRequest, Problems> {
    let mut p = Problems::default();
    let Some(obj) = body.as_object() else {
        p.push("body", "must be a JSON object");
        return Err(p);
    };
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            p.push(
                key,
                format!("is not a field of a promo code (known fields: {})", FIELDS.join(", ")),
            );
        }
    }

    let code = match obj.get("code") {
        None | Some(Value::Null) => {
            p.push("code", "is required");
            None
        }
        Some(v) => string(v, "code", &mut p).and_then(|c| check_code(c, &mut p)),
    };
    let campaign = opt(obj, "campaign")
        .and_then(|v| string(v, "campaign", &mut p))
        .and_then(|c| {
            if ctx.campaigns.contains(c) {
                Some(c.to_owned())
            } else {
                p.push(
                    "campaign",
                    format!(
                        "`{c}` has no mapping file in mappings/ (known: {})",
                        join(ctx.campaigns)
                    ),
                );
                None
            }
        });
    let discount = match obj.get("discount") {
        None | Some(Value::Null) => {
            p.push(
                "discount",
                "is required: { \"percent_off\": N } or { \"amount_off\": N, \"currency\": \"USD\" }",
            );
            None
        }
        Some(v) => parse_discount(v, "discount", &mut p),
    };
    let active = opt(obj, "active").map_or(Some(true), |v| boolean(v, "active", &mut p));
    let starts_at = opt(obj, "starts_at").and_then(|v| date_time(v, "starts_at", &mut p));
    let expires_at = opt(obj, "expires_at").and_then(|v| date_time(v, "expires_at", &mut p));
    if let (Some(s), Some(e)) = (starts_at, expires_at) {
        if e <= s {
            p.push("expires_at", "must be later than starts_at");
        }
    }
    let max_redemptions = opt(obj, "max_redemptions").and_then(|v| count(v, "max_redemptions", &mut p));
    let first_time_only = opt(obj, "first_time_only").map_or(Some(false), |v| boolean(v, "first_time_only", &mut p));
    let minimum_order = opt(obj, "minimum_order").and_then(|v| parse_money(v, "minimum_order", "amount", &mut p));
    let customer = opt(obj, "customer").and_then(|v| parse_party(v, "customer", &mut p));
    let partner = opt(obj, "partner").and_then(|v| parse_party(v, "partner", &mut p));
    let description = opt(obj, "description")
        .and_then(|v| string(v, "description", &mut p))
        .map(str::to_owned);
    let metadata = match opt(obj, "metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            p.push("metadata", "must be an object of key-value pairs");
            Map::new()
        }
    };
    let duration = opt(obj, "duration").and_then(|v| parse_duration(v, "duration", &mut p));
    let targets = opt(obj, "targets").and_then(|v| parse_targets(v, ctx, &mut p));
    if opt(obj, "targets").is_none() && opt(obj, "campaign").is_none() {
        p.push(
            "targets",
            "is required when no campaign is given (the campaign's mapping names the default targets)",
        );
    }
    let on_unsupported = opt(obj, "on_unsupported").map_or(Some(OnUnsupported::Refuse), |v| {
        let parsed = serde_json::from_value(v.clone()).ok();
        if parsed.is_none() {
            p.push("on_unsupported", "must be \"refuse\" or \"skip_field\"");
        }
        parsed
    });
    let passthrough =
        opt(obj, "passthrough").map_or_else(BTreeMap::new, |v| parse_passthrough(v, targets.as_deref(), ctx, &mut p));

    match (code, discount, active, first_time_only, on_unsupported) {
        (Some(code), Some(discount), Some(active), Some(first_time_only), Some(on_unsupported)) if p.is_empty() => {
            Ok(CreateRequest {
                promo: PromoCode {
                    code: code.to_owned(),
                    campaign,
                    discount,
                    active,
                    starts_at,
                    expires_at,
                    max_redemptions,
                    first_time_only,
                    minimum_order,
                    customer,
                    partner,
                    description,
                    metadata,
                    duration,
                },
                targets,
                on_unsupported,
                passthrough,
            })
        }
        _ => Err(p),
    }
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// An optional field: absent and `null` both mean "not given".
fn opt<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string<'a>(v: &'a Value, field: &str, p: &mut Problems) -> Option<&'a str> {
    match v.as_str() {
        Some(s) => Some(s),
        None => {
            p.push(field, format!("must be a string, got {}", type_name(v)));
            None
        }
    }
}

fn boolean(v: &Value, field: &str, p: &mut Problems) -> Option<bool> {
    let b = v.as_bool();
    if b.is_none() {
        p.push(field, format!("must be true or false, got {}", type_name(v)));
    }
    b
}

/// Folds text to the form in which two strings are one to a vendor that compares them loosely:
/// Unicode compatibility normalisation and full case folding, as in Unicode's compatibility
/// caseless match (D146: `NFKD(casefold(NFKD(casefold(NFD(s)))))`), composed again (NFKC) so
/// the result reads like the text. `SPRING20`, `spring20` and `ＳＰＲＩＮＧ２０` fold alike, and
/// so do `KEY` and `\u{212A}EY` (with the Kelvin sign), which `to_uppercase` keeps apart.
pub fn fold(s: &str) -> String {
    use caseless::Caseless;
    use unicode_normalization::UnicodeNormalization;
    s.chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

/// The one key under which codes are compared (the ledger's `code_key` column): two codes with
/// the same key are the same code to some vendor, so one campaign holds one of them, and one
/// upstream holds it for one campaign.
pub fn code_key(code: &str) -> String {
    fold(code)
}

/// Unicode's format characters (general category Cf, as of Unicode 15.1): invisible, so a code
/// holding one looks like the code without it (`SPRING\u{200B}123` beside `SPRING123`), and the
/// bidi controls among them can make a code display as another. The table is small and changes
/// rarely, so it is kept here rather than pulling in a crate of character properties for one
/// category.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a format character (category Cf).
pub fn is_format_char(c: char) -> bool {
    FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

fn check_code<'a>(code: &'a str, p: &mut Problems) -> Option<&'a str> {
    let len = code.chars().count();
    if len == 0 || len > MAX_CODE_LEN {
        p.push(
            "code",
            format!("must be 1 to {MAX_CODE_LEN} characters long, got {len}"),
        );
        return None;
    }
    if code.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.push("code", "must not contain whitespace or control characters");
        return None;
    }
    if let Some(c) = code.chars().find(|c| is_format_char(*c)) {
        p.push(
            "code",
            format!(
                "must not contain invisible format characters (Unicode category Cf: zero-width spaces and joiners, \
                 the byte-order mark, bidi controls such as U+202E), which make a code look like another; found U+{:04X}",
                u32::from(c)
            ),
        );
        return None;
    }
    Some(code)
}

/// A count the gateway keeps as a `u32` (redemptions, a duration's length): 1 to 4294967295.
fn count(v: &Value, field: &str, p: &mut Problems) -> Option<u32> {
    let n = v.as_u64().filter(|n| *n >= 1).and_then(|n| u32::try_from(n).ok());
    if n.is_none() {
        p.push(field, format!("must be an integer from 1 to {}, got {v}", u32::MAX));
    }
    n
}

/// The earliest and latest instants a code's dates may name, as RFC 3339 text. Every vendor
/// format has four-digit years: an RFC 3339 date-time in UTC (Loop, Spacebring) and a date in
/// the upstream's time zone (Partnero, Limio), which is up to a day away from UTC. Beyond these,
/// `9999-12-31T23:59:59-14:00` would go out as `+10000-01-01T13:59:59Z`.
pub const EARLIEST: &str = "0001-01-02T00:00:00Z";
pub const LATEST: &str = "9999-12-30T23:59:59Z";

fn date_time(v: &Value, field: &str, p: &mut Problems) -> Option<DateTime<FixedOffset>> {
    use chrono::Timelike;
    let s = string(v, field, p)?;
    let Ok(t) = DateTime::parse_from_rfc3339(s) else {
        p.push(
            field,
            format!("must be an RFC 3339 date-time with an offset, such as 2026-04-01T00:00:00Z; got `{s}`"),
        );
        return None;
    };
    // chrono keeps a leap second as a nanosecond count past 1e9.
    if t.nanosecond() >= 1_000_000_000 {
        p.push(
            field,
            format!("must not name a leap second (second 60): vendors' date-time parsers refuse it; got `{s}`"),
        );
        return None;
    }
    let bound = |b: &str| DateTime::parse_from_rfc3339(b).expect("a valid bound");
    if t < bound(EARLIEST) || t > bound(LATEST) {
        p.push(
            field,
            format!(
                "must be from {EARLIEST} to {LATEST}, so that every vendor's date format (four-digit years, in UTC \
                 and in the upstream's time zone) can carry it; got `{s}`"
            ),
        );
        return None;
    }
    Some(t)
}

fn object<'a>(v: &'a Value, field: &str, allowed: &[&str], p: &mut Problems) -> Option<&'a Map<String, Value>> {
    let Some(obj) = v.as_object() else {
        p.push(field, format!("must be an object, got {}", type_name(v)));
        return None;
    };
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            p.push(
                format!("{field}.{key}"),
                format!("is not a field of {field} (known fields: {})", allowed.join(", ")),
            );
        }
    }
    Some(obj)
}

fn currency(obj: &Map<String, Value>, field: &str, p: &mut Problems) -> Option<Currency> {
    let path = format!("{field}.currency");
    match opt(obj, "currency") {
        None => {
            p.push(path, "is required with an amount (ISO 4217, such as USD)");
            None
        }
        Some(v) => {
            let code = string(v, &path, p)?;
            match Currency::parse(code) {
                Ok(c) => Some(c),
                Err(rule) => {
                    p.push(path, format!("{rule}; got `{code}`"));
                    None
                }
            }
        }
    }
}

fn positive_minor(v: &Value, path: &str, p: &mut Problems) -> Option<u64> {
    let n = v.as_u64().filter(|n| (1..=MAX_AMOUNT).contains(n));
    if n.is_none() {
        p.push(
            path,
            format!(
                "must be a positive integer in the currency's minor units (cents for USD), at most {MAX_AMOUNT} \
                 (vendors read amounts as JavaScript numbers or decimals, exact only to 15 digits); got {v}"
            ),
        );
    }
    n
}

fn parse_money(v: &Value, field: &str, amount_key: &str, p: &mut Problems) -> Option<Money> {
    let obj = object(v, field, &[amount_key, "currency"], p)?;
    money_fields(obj, field, amount_key, p)
}

/// The amount and currency of an object whose keys the caller has already checked (so that an
/// unknown key is reported once, not once per reading).
fn money_fields(obj: &Map<String, Value>, field: &str, amount_key: &str, p: &mut Problems) -> Option<Money> {
    let amount = match opt(obj, amount_key) {
        None => {
            p.push(format!("{field}.{amount_key}"), "is required");
            None
        }
        Some(v) => positive_minor(v, &format!("{field}.{amount_key}"), p),
    };
    let currency = currency(obj, field, p);
    Some(Money {
        amount: amount?,
        currency: currency?,
    })
}

fn parse_discount(v: &Value, field: &str, p: &mut Problems) -> Option<Discount> {
    let obj = object(v, field, &["percent_off", "amount_off", "currency"], p)?;
    match (opt(obj, "percent_off"), opt(obj, "amount_off")) {
        (Some(_), Some(_)) => {
            p.push(field, "must have either percent_off or amount_off, not both");
            None
        }
        (None, None) => {
            p.push(field, "must have percent_off, or amount_off with currency");
            None
        }
        (Some(pct), None) => {
            if obj.contains_key("currency") {
                p.push(format!("{field}.currency"), "is only allowed with amount_off");
            }
            let parsed = pct.as_number().and_then(Percent::from_json);
            if parsed.is_none() {
                p.push(format!("{field}.percent_off"), format!("{}; got {pct}", Percent::RULE));
            }
            parsed.map(Discount::Percent)
        }
        (None, Some(_)) => money_fields(obj, field, "amount_off", p).map(Discount::Amount),
    }
}

fn parse_party(v: &Value, field: &str, p: &mut Problems) -> Option<Party> {
    let obj = object(v, field, &["id", "name"], p)?;
    let id = match opt(obj, "id") {
        None => {
            p.push(format!("{field}.id"), "is required");
            None
        }
        Some(v) => string(v, &format!("{field}.id"), p).filter(|s| {
            let ok = !s.trim().is_empty();
            if !ok {
                p.push(format!("{field}.id"), "must not be empty");
            }
            ok
        }),
    };
    let name = opt(obj, "name")
        .and_then(|v| string(v, &format!("{field}.name"), p))
        .map(str::to_owned);
    Some(Party {
        id: id?.to_owned(),
        name,
    })
}

fn parse_duration(v: &Value, field: &str, p: &mut Problems) -> Option<DiscountDuration> {
    let obj = object(v, field, &["length", "unit"], p)?;
    let length = match opt(obj, "length") {
        None => {
            p.push(format!("{field}.length"), "is required");
            None
        }
        Some(v) => count(v, &format!("{field}.length"), p),
    };
    let unit = opt(obj, "unit").and_then(|u| serde_json::from_value::<DurationUnit>(u.clone()).ok());
    if unit.is_none() {
        p.push(
            format!("{field}.unit"),
            "is required and must be one of days, weeks, months, years",
        );
    }
    Some(DiscountDuration {
        length: length?,
        unit: unit?,
    })
}

fn parse_targets(v: &Value, ctx: &ValidationContext<'_>, p: &mut Problems) -> Option<Vec<String>> {
    let Some(items) = v.as_array() else {
        p.push(
            "targets",
            format!("must be an array of upstream names, got {}", type_name(v)),
        );
        return None;
    };
    if items.is_empty() {
        p.push("targets", "must name at least one upstream");
        return None;
    }
    let mut out = Vec::new();
    let before = p.0.len();
    for (i, item) in items.iter().enumerate() {
        let field = format!("targets[{i}]");
        let Some(name) = string(item, &field, p) else {
            continue;
        };
        if !ctx.upstreams.contains(name) {
            p.push(
                field,
                format!(
                    "`{name}` is not a configured upstream (configured: {})",
                    join(ctx.upstreams)
                ),
            );
        } else if out.iter().any(|t| t == name) {
            p.push(field, format!("`{name}` is listed twice"));
        } else {
            out.push(name.to_owned());
        }
    }
    (p.0.len() == before).then_some(out)
}

/// Extra vendor fields keyed by target. With explicit targets a key must be one of them; without
/// (the campaign names the targets, or the targets are themselves invalid) it must at least be a
/// configured upstream, so that a misspelt key is refused rather than silently never sent.
fn parse_passthrough(
    v: &Value,
    targets: Option<&[String]>,
    ctx: &ValidationContext<'_>,
    p: &mut Problems,
) -> BTreeMap<String, Map<String, Value>> {
    let mut out = BTreeMap::new();
    let Some(obj) = v.as_object() else {
        p.push("passthrough", "must be an object keyed by target name");
        return out;
    };
    for (target, extras) in obj {
        let field = format!("passthrough.{target}");
        match targets {
            Some(targets) if !targets.iter().any(|t| t == target) => {
                p.push(&field, format!("`{target}` is not one of this request's targets"));
                continue;
            }
            None if !ctx.upstreams.contains(target) => {
                p.push(
                    &field,
                    format!(
                        "`{target}` is not a configured upstream (configured: {})",
                        join(ctx.upstreams)
                    ),
                );
                continue;
            }
            _ => {}
        }
        match extras.as_object() {
            Some(m) => {
                out.insert(target.clone(), m.clone());
            }
            None => p.push(field, "must be an object of extra vendor fields"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx_sets() -> (BTreeSet<String>, BTreeSet<String>) {
        (
            ["loop", "partnero"].iter().map(|s| s.to_string()).collect(),
            ["spring-2026"].iter().map(|s| s.to_string()).collect(),
        )
    }

    fn check(body: Value) -> Result<CreateRequest, Problems> {
        let (u, c) = ctx_sets();
        validate(
            &body,
            &ValidationContext {
                upstreams: &u,
                campaigns: &c,
            },
        )
    }

    #[test]
    fn the_issue_example_is_valid() {
        let r = check(json!({
            "code": "SPRING-20", "campaign": "spring-2026", "discount": { "percent_off": 20 },
            "active": true, "starts_at": "2026-03-01T00:00:00Z", "expires_at": "2026-04-01T00:00:00Z",
            "max_redemptions": 500, "first_time_only": false,
            "minimum_order": { "amount": 2500, "currency": "USD" },
            "customer": { "id": "cus_123", "name": "Ada Lovelace" },
            "partner": { "id": "p_9", "name": "Acme Affiliates" },
            "description": "Spring sale", "metadata": { "source": "crm" },
            "targets": ["loop", "partnero"]
        }))
        .unwrap();
        assert_eq!(
            r.promo.discount,
            Discount::Percent(Percent::from_hundredths(2000).unwrap())
        );
        assert_eq!(r.promo.minimum_order.unwrap().amount, 2500);
        assert_eq!(r.targets.unwrap(), vec!["loop", "partnero"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = check(json!({
            "code": "", "discount": { "percent_off": 0 }, "max_redemption": 5,
            "targets": ["nowhere"], "expires_at": "tomorrow"
        }))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "max_redemption",
                "code",
                "discount.percent_off",
                "expires_at",
                "targets[0]"
            ]
        );
    }

    #[test]
    fn neither_targets_nor_campaign_is_refused() {
        let e = check(json!({ "code": "A", "discount": { "percent_off": 5 } })).unwrap_err();
        assert_eq!(e.0[0].field, "targets");
    }

    #[test]
    fn an_unknown_key_beside_an_amount_is_reported_once() {
        let e = check(json!({
            "code": "A", "discount": { "amount_off": 500, "currency": "USD", "percent": 1 }, "targets": ["loop"]
        }))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["discount.percent"]);
    }

    #[test]
    fn passthrough_without_targets_must_name_a_configured_upstream() {
        let e = check(json!({
            "code": "A", "campaign": "spring-2026", "discount": { "percent_off": 5 },
            "passthrough": { "loop": {}, "nowhere": { "x": 1 } }
        }))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["passthrough.nowhere"]);
    }

    #[test]
    fn codes_fold_by_nfkc_and_case_folding() {
        assert_eq!(code_key("Spring20"), code_key("SPRING20"));
        assert_eq!(code_key("\u{212A}EY"), code_key("KEY"));
        assert_eq!(code_key("\u{FF33}\u{FF30}"), code_key("sp"));
        assert_eq!(code_key("STRASSE"), code_key("stra\u{DF}e"));
        assert_eq!(code_key("e\u{301}"), code_key("\u{E9}"));
        assert_ne!(code_key("SPRING\u{200B}123"), code_key("SPRING123"));
        // Folding twice changes nothing: the key is a fixed point.
        for s in ["\u{212A}EY", "Stra\u{DF}e", "\u{1E9E}", "\u{130}", "ﬁ"] {
            assert_eq!(code_key(&code_key(s)), code_key(s), "{s}");
        }
    }

    #[test]
    fn format_characters_are_refused_in_codes() {
        for (code, named) in [
            ("SPRING\u{200B}123", "U+200B"),
            ("\u{FEFF}SPRING", "U+FEFF"),
            ("A\u{202A}B", "U+202A"),
            ("A\u{2069}B", "U+2069"),
            ("A\u{E0041}B", "U+E0041"),
        ] {
            let e = check(json!({ "code": code, "discount": { "percent_off": 5 }, "targets": ["loop"] })).unwrap_err();
            assert_eq!(e.0[0].field, "code");
            assert!(e.0[0].rule.contains(named), "{}", e.0[0].rule);
        }
        assert!(check(json!({ "code": "Ŝpring-ÄÖ", "discount": { "percent_off": 5 }, "targets": ["loop"] })).is_ok());
    }

    #[test]
    fn discount_round_trips_through_its_wire_form() {
        for v in [
            json!({ "percent_off": 12.5 }),
            json!({ "amount_off": 500, "currency": "JPY" }),
        ] {
            let d: Discount = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(d).unwrap(), v);
        }
        assert!(serde_json::from_value::<Discount>(json!({ "percent_off": 5, "amount_off": 5 })).is_err());
    }
}
