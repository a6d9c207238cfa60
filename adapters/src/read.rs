//! Reading a code back from a vendor: the third operation, a variant of create and revoke
//! (DESIGN.md, "A code's life after its create"). The same context and request type, the same
//! HTTP-level reading ([`crate::adapter::read`]); what differs is that a read is never claimed
//! in the ledger and is always safe to send again. The documents are
//! `shared/vendor-docs/lifecycle/`; each vendor's module says what it can read and how.
//!
//! A vendor's copy is compared with the ledger's **in the vendor's own terms**: each adapter
//! declares, per unified field it can read back, where its create body put the value and where
//! the vendor's object gives it back ([`ReadBack`]). The ledger's code is translated as a create
//! would be, and the two values are compared there. So a date-only vendor is compared at the
//! precision it keeps (the date the gateway sent, not the instant the merchant asked), a field
//! the vendor rounds is compared as rounded, and no reverse conversion has to undo the forward
//! one exactly; the answer still names the unified field.

use std::fmt;

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapter::{
    read, Adapter, FailureCause, Reading, RetryAfter, VendorKind, VendorRequest, VendorResponse, Warning,
};
use crate::model::PromoCode;
use crate::operation::Operation;
use crate::policy::{Field, Support};

/// What the gateway knows of a code at one target, to find it there.
#[derive(Debug, Clone, Copy)]
pub struct ReadTarget<'a> {
    /// The code as the ledger holds it (as sent).
    pub code: &'a str,
    /// What the vendor's create answer named it, when the ledger holds it as created there.
    pub vendor_id: Option<&'a str>,
}

/// How one code is read at one target.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadPlan {
    /// One call answers for the code; [`Adapter::parse_read`] reads its answer.
    Get(VendorRequest),
    /// The vendor documents no get-one: its list is walked from the first page
    /// ([`Adapter::plan_list`]) until an entry matches ([`Adapter::is_read_target`]).
    Scan,
    /// The vendor documents no call that reads the code; nothing is sent.
    Unreadable { reason: String },
}

/// How one page of a vendor's codes is asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum ListPlan {
    Page(VendorRequest),
    /// The vendor documents no list this gateway can walk; nothing is sent.
    Unreadable {
        reason: String,
    },
}

/// What a code's absence from a complete walk of a vendor's list says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlisted {
    /// The vendor lists every code it holds: an unlisted code is not there.
    Absent,
    /// The vendor lists only its active codes: an unlisted code is not active there, for a
    /// reason the list cannot tell (the text says which).
    NotActive(&'static str),
}

/// Where the walk of a vendor's list goes on: a page number, an offset or a vendor's token,
/// opaque to everyone but the adapter that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub String);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of a vendor's list of codes.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub codes: Vec<VendorCode>,
    /// Where the next page starts; `None` on the last one.
    pub next: Option<Cursor>,
    /// What the page leaves uncertain (a list that may be cut off, a cursor the vendor
    /// ignored), for every code the walk reports.
    pub warnings: Vec<Warning>,
}

/// Whether a vendor's copy of a code can be redeemed, as far as the vendor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Active,
    /// Archived, switched off, or (for a vendor that lists only active codes) not listed.
    Revoked,
}

/// A code as one vendor holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorCode {
    pub code: String,
    /// The vendor's id for it, where it has one besides the code.
    pub vendor_id: Option<String>,
    pub liveness: Liveness,
    /// Redemptions so far, where the vendor counts them.
    pub redemptions: Option<u64>,
    /// The vendor's object for the code, which the [`ReadBack`] pointers read.
    pub object: Value,
    /// What this copy leaves uncertain.
    pub warnings: Vec<Warning>,
}

/// What a read call found, read from the vendor's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome<T> {
    Found(T),
    /// A `404`: the vendor does not know the code (or its parent).
    NotFound {
        message: String,
    },
    Rejected {
        status: u16,
        message: String,
    },
    Throttled {
        retry_after: Option<RetryAfter>,
        message: String,
    },
    Failed {
        message: String,
        retryable: bool,
        cause: FailureCause,
    },
}

/// The read reading: `found` reads the documented 2xx body (`None` when it is not that shape);
/// a 404 is the code not found.
pub fn classify_read<T>(
    vendor: VendorKind,
    response: &VendorResponse<'_>,
    found: impl FnOnce(Option<&Value>) -> Option<T>,
) -> ReadOutcome<T> {
    match read(vendor, Operation::Read, response, found) {
        Reading::Success(t) => ReadOutcome::Found(t),
        Reading::Refused { status: 404, message } => ReadOutcome::NotFound { message },
        Reading::Refused { status, message } => ReadOutcome::Rejected { status, message },
        Reading::Throttled { retry_after, message } => ReadOutcome::Throttled { retry_after, message },
        Reading::Failed {
            message,
            retryable,
            cause,
        } => ReadOutcome::Failed {
            message,
            retryable,
            cause,
        },
    }
}

/// Where a value sits in a vendor's JSON: a pointer, and, for vendors that pair each value
/// with an on/off switch (`expiration.enabled`, `redemption_times_status`), the switch, which
/// when `false` makes the value mean "none" whatever it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at: &'static str,
    pub when: Option<&'static str>,
}

impl Slot {
    pub const fn at(at: &'static str) -> Self {
        Slot { at, when: None }
    }

    pub const fn switched(at: &'static str, when: &'static str) -> Self {
        Slot { at, when: Some(when) }
    }

    fn value<'a>(&self, json: &'a Value) -> Option<&'a Value> {
        if let Some(switch) = self.when {
            if json.pointer(switch) != Some(&Value::Bool(true)) {
                return None;
            }
        }
        json.pointer(self.at).filter(|v| !blank(v))
    }
}

/// One unified field as a vendor holds it: in the create body the gateway sent, and in the
/// vendor's object for the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBack {
    pub field: Field,
    pub sent: Slot,
    pub read: Slot,
}

/// A unified field whose value at the vendor is not the one the ledger's code gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The unified field, as a request names it.
    pub field: &'static str,
    /// What the gateway sent for it (as the vendor takes it); `null` for none.
    pub ledger: Value,
    /// What the vendor holds; `null` for none.
    pub vendor: Value,
}

/// The fields where `object` (a vendor's copy) holds other values than `sent` (the create body
/// the ledger's code translates to), in the adapter's [`Adapter::read_back`] order.
pub fn differences(adapter: &dyn Adapter, sent: &Value, object: &Value) -> Vec<Difference> {
    adapter
        .read_back()
        .iter()
        .filter_map(|rb| {
            let (ours, theirs) = (rb.sent.value(sent), rb.read.value(object));
            (!same(ours, theirs)).then(|| Difference {
                field: rb.field.name(),
                ledger: ours.cloned().unwrap_or(Value::Null),
                vendor: theirs.cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// One warning for the fields `code` sets and the vendor carries but cannot give back, so that
/// "no differences" is never read as "every field checked".
pub fn unreadable_fields(adapter: &dyn Adapter, code: &PromoCode) -> Option<Warning> {
    let readable = adapter.read_back();
    let unread: Vec<&str> = Field::ALL
        .into_iter()
        .filter(|f| f.is_set(code))
        // Whether the vendor holds the code switched on is its liveness, read from every copy.
        .filter(|f| *f != Field::Active)
        .filter(|f| matches!(adapter.support(*f), Support::Carried | Support::Lossy(_)))
        .filter(|f| !readable.iter().any(|rb| rb.field == *f))
        .map(Field::name)
        .collect();
    (!unread.is_empty()).then(|| Warning {
        field: unread.join(", "),
        message: format!(
            "{} gives no way to read {} back, so it was not compared",
            adapter.kind(),
            if unread.len() == 1 {
                "this field"
            } else {
                "these fields"
            }
        ),
    })
}

/// No value: absent, `null`, or the empty forms vendors send for "none" (`""`, Partnero's
/// PHP-style `[]` for an empty map, `{}`).
fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Equal as the vendor means them: numbers by value (`15` and `15.0`), date-times by instant
/// (`…T23:59:59Z` and `…T23:59:59.000Z`), objects member by member.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_value(a, b),
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!(
                    (DateTime::parse_from_rfc3339(x), DateTime::parse_from_rfc3339(y)),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .all(|k| same(x.get(k).filter(|v| !blank(v)), y.get(k).filter(|v| !blank(v))))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b)),
        _ => a == b,
    }
}

/// The one place a vendor's JSON number becomes a count: a negative or fractional one is no count.
pub fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_compared_as_the_vendor_means_them() {
        assert!(same_value(&json!(15), &json!(15.0)));
        assert!(same_value(
            &json!("2026-03-31T23:59:59Z"),
            &json!("2026-03-31T23:59:59.000Z")
        ));
        assert!(same_value(
            &json!("2026-03-31T23:59:59Z"),
            &json!("2026-04-01T01:59:59+02:00")
        ));
        assert!(!same_value(&json!("2026-03-31"), &json!("2026-04-01")));
        assert!(same_value(&json!({"id": "p", "x": []}), &json!({"id": "p"})));
        assert!(!same_value(&json!({"id": "p"}), &json!({"id": "q"})));
        assert!(same(None, Some(&json!(null)).filter(|v| !blank(v))));
    }

    #[test]
    fn a_switched_off_value_is_none_whatever_it_holds() {
        let slot = Slot::switched("/v", "/on");
        assert_eq!(slot.value(&json!({"on": false, "v": 0})), None);
        assert_eq!(slot.value(&json!({"on": true, "v": 5})), Some(&json!(5)));
        assert_eq!(slot.value(&json!({"v": 5})), None);
        assert_eq!(Slot::at("/v").value(&json!({"v": ""})), None);
    }
}
