//! The translation policy: one place that decides, for every vendor, what happens to a unified
//! field it cannot carry exactly.
//!
//! Each adapter declares its [`Support`] per [`Field`]; this module applies the rules:
//! - a restriction a vendor cannot carry makes the target `unsupported` (no call), unless the
//!   request says `"on_unsupported": "skip_field"`, and then it is dropped with a warning;
//! - an informational field (description, metadata) a vendor cannot carry is dropped with a
//!   warning: losing it cannot make a code more generous, so refusing would only get in the way;
//! - the discount is never dropped, whatever the request says: a code without its discount is
//!   not the merchant's code.
//!
//! Lossy conversions are done by the adapters (only they know whether a given value lost
//! anything) and always in the direction that gives less; they report their own warnings.
//! docs/vendors.md's vendor table is [`markdown_table`], and a test keeps the two equal.

use serde::Serialize;

use crate::adapter::{Adapter, BuildError, Warning};
use crate::model::{Discount, OnUnsupported, PromoCode};
use crate::vendors;

/// A unified field, as named in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Field {
    PercentOff,
    AmountOff,
    Active,
    StartsAt,
    ExpiresAt,
    MaxRedemptions,
    FirstTimeOnly,
    MinimumOrder,
    Customer,
    Partner,
    Duration,
    Description,
    Metadata,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::PercentOff,
        Field::AmountOff,
        Field::Active,
        Field::StartsAt,
        Field::ExpiresAt,
        Field::MaxRedemptions,
        Field::FirstTimeOnly,
        Field::MinimumOrder,
        Field::Customer,
        Field::Partner,
        Field::Duration,
        Field::Description,
        Field::Metadata,
    ];

    /// The request's name for the field.
    pub fn name(self) -> &'static str {
        match self {
            Field::PercentOff => "discount.percent_off",
            Field::AmountOff => "discount.amount_off",
            Field::Active => "active",
            Field::StartsAt => "starts_at",
            Field::ExpiresAt => "expires_at",
            Field::MaxRedemptions => "max_redemptions",
            Field::FirstTimeOnly => "first_time_only",
            Field::MinimumOrder => "minimum_order",
            Field::Customer => "customer",
            Field::Partner => "partner",
            Field::Duration => "duration",
            Field::Description => "description",
            Field::Metadata => "metadata",
        }
    }

    /// Whether dropping the field could make the code more generous than asked.
    pub fn is_restriction(self) -> bool {
        !matches!(self, Field::Description | Field::Metadata)
    }

    /// Whether the code sets the field to something a vendor must honour. `active: true` and
    /// `first_time_only: false` are every vendor's default, so they need no carrying.
    pub fn is_set(self, code: &PromoCode) -> bool {
        match self {
            Field::PercentOff => matches!(code.discount, Discount::Percent(_)),
            Field::AmountOff => matches!(code.discount, Discount::Amount(_)),
            Field::Active => !code.active,
            Field::StartsAt => code.starts_at.is_some(),
            Field::ExpiresAt => code.expires_at.is_some(),
            Field::MaxRedemptions => code.max_redemptions.is_some(),
            Field::FirstTimeOnly => code.first_time_only,
            Field::MinimumOrder => code.minimum_order.is_some(),
            Field::Customer => code.customer.is_some(),
            Field::Partner => code.partner.is_some(),
            Field::Duration => code.duration.is_some(),
            Field::Description => code.description.is_some(),
            Field::Metadata => !code.metadata.is_empty(),
        }
    }
}

/// How a vendor carries one unified field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Sent as given.
    Carried,
    /// Sent with a known loss of precision, always towards giving less; the text says what.
    Lossy(&'static str),
    /// Granted by the parent object the campaign maps (a coupon, a promotion); the gateway
    /// checks that the code asks for exactly what the parent grants.
    Parent,
    /// The vendor has nowhere to put it.
    NotCarried,
}

/// What the policy decided for one code and one adapter.
#[derive(Debug, Default)]
pub struct Checked {
    /// Fields to leave out of the request.
    pub skipped: Vec<Field>,
    pub warnings: Vec<Warning>,
}

/// Applies the policy; see the module docs for the rules. A refusal names every field the
/// vendor cannot carry, not just the first, so one round trip tells the whole story.
pub fn check(adapter: &dyn Adapter, code: &PromoCode, on_unsupported: OnUnsupported) -> Result<Checked, BuildError> {
    let mut out = Checked::default();
    let mut refused = Vec::new();
    let mut discount_refused = false;
    for field in Field::ALL {
        if !field.is_set(code) || adapter.support(field) != Support::NotCarried {
            continue;
        }
        let is_discount = matches!(field, Field::PercentOff | Field::AmountOff);
        if is_discount || (field.is_restriction() && on_unsupported == OnUnsupported::Refuse) {
            discount_refused |= is_discount;
            refused.push(field.name());
            continue;
        }
        out.skipped.push(field);
        out.warnings.push(Warning {
            field: field.name().to_owned(),
            message: format!("not sent: {} has no such field", adapter.kind()),
        });
    }
    if refused.is_empty() {
        return Ok(out);
    }
    Err(BuildError::Unsupported {
        vendor: adapter.kind(),
        field: refused.join(", "),
        reason: if discount_refused {
            "a code cannot be sent without its discount".to_owned()
        } else {
            "the vendor has no such restriction; set \"on_unsupported\": \"skip_field\" to send the code without it"
                .to_owned()
        },
    })
}

/// The vendor table of docs/vendors.md, generated from the adapters themselves.
pub fn markdown_table() -> String {
    let adapters = vendors::all();
    let mut out = String::from("| unified field |");
    for a in &adapters {
        out.push_str(&format!(" {} |", a.kind()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(adapters.len()));
    out.push('\n');
    for field in Field::ALL {
        out.push_str(&format!("| `{}` |", field.name()));
        for a in &adapters {
            let cell = match a.support(field) {
                Support::Carried => "yes".to_owned(),
                Support::Lossy(why) => format!("lossy: {why}"),
                Support::Parent => "via parent".to_owned(),
                Support::NotCarried if field.is_restriction() => "**no**".to_owned(),
                Support::NotCarried => "no (warning)".to_owned(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}
