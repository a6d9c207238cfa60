//! promo-gateway's adapters: the unified promo-code model, the translation policy, and one
//! module per vendor that turns a unified code into that vendor's exact request and reads the
//! vendor's answer back. No I/O happens here; the gateway's engine owns sockets, clocks and
//! credentials.

pub mod adapter;
pub mod dates;
pub mod json;
pub mod mapping;
pub mod model;
pub mod money;
pub mod operation;
pub mod policy;
pub mod read;
pub mod settings;
pub mod vendors;

pub use adapter::{
    Adapter, BuildContext, BuildError, FailureCause, Outcome, Translation, VendorKind, VendorRequest, VendorResponse,
    Warning,
};
pub use mapping::{Campaign, UpstreamMapping};
pub use model::{CreateRequest, Discount, OnUnsupported, Problem, Problems, PromoCode};
pub use operation::{Missing, Operation, RevokeAction, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
pub use policy::{Field, Support};
