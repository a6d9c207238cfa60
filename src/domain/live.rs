//! What each vendor really holds of a code, read back now: the answer of
//! `GET /v1/promo-codes/{code}/live`. Plain data, as the rest of the domain.

use promo_adapters::read::Difference;
use promo_adapters::{VendorKind, Warning};
use serde::Serialize;

use super::delivery::{Status, TargetError};

/// A code's state at one vendor, as its read answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    /// The vendor holds it and it can be redeemed, as far as the vendor says.
    Active,
    /// The vendor holds it archived or switched off, or (a vendor that lists only active
    /// codes) does not list it as active; the warnings say which.
    Revoked,
    /// The vendor does not hold it (a 404, or absent from a complete walk of its list).
    Absent,
    /// The vendor documents no call that reads it back; nothing was sent.
    Unreadable,
    /// The ledger holds no delivery of it there, so nothing was read.
    NotDelivered,
    /// The read failed (`error` says why: a timeout, a rate limit, a refusal, missing
    /// credentials): what the vendor holds is not known.
    Unknown,
}

/// One target's read.
#[derive(Debug, Clone, Serialize)]
pub struct LiveResult {
    pub upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorKind>,
    pub state: LiveState,
    /// The ledger's state of the code's delivery there, for comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Status>,
    /// The vendor's id for the code, as its read gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Redemptions so far, where the vendor counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redemptions: Option<u64>,
    /// The unified fields whose value at the vendor is not the one the ledger's code sends.
    pub differs: Vec<Difference>,
    pub warnings: Vec<Warning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    /// HTTP calls made to the vendor for this read (pages and retries included).
    pub attempts: u32,
}

/// The answer of a live read: the code as the ledger holds it, and each target's copy.
#[derive(Debug, Clone, Serialize)]
pub struct LiveResponse {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// When the ledger first recorded the code revoked: a vendor that holds it active then
    /// still accepts a code the merchant revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    pub results: Vec<LiveResult>,
}
