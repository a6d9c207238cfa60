//! One module a vendor. Each holds the vendor's typed request and response shapes and the
//! conversions to and from the unified model, following its document in
//! `shared/vendor-docs/` to the letter.

pub mod limio;
pub mod r#loop;
pub mod moltin;
pub mod partnero;
pub mod spacebring;

use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, BuildError};
use crate::settings::Vendor;

/// Declares the registry: per vendor module, its [`Vendor`] entry (the `kind` config.toml names,
/// its settings and their rules) and the adapter kinds it may pick, each with its adapter and its
/// name in messages. [`VendorKind`], [`REGISTRY`] and [`for_kind`] are generated from it. (The
/// modules are declared outside the macro: rustfmt does not reach modules a macro declares.)
macro_rules! registry {
    ($($module:ident => [$($variant:ident = $adapter:expr, $name:literal);+ $(;)?];)+) => {
        /// The vendor APIs the gateway speaks, one an adapter. A vendor with several contracts
        /// has a kind for each (Limio's two promo-code versions: inline discount vs catalog
        /// reference), chosen by the upstream's settings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum VendorKind {
            $($($variant,)+)+
        }

        impl VendorKind {
            /// How many kinds there are.
            const COUNT: usize = [$($(stringify!($variant),)+)+].len();

            /// Every kind, in the registry's order (docs/vendors.md's table's).
            pub const ALL: [VendorKind; Self::COUNT] = [$($(VendorKind::$variant,)+)+];

            /// The vendor's name in messages: "Limio v2".
            pub fn display_name(self) -> &'static str {
                match self {
                    $($(VendorKind::$variant => $name,)+)+
                }
            }
        }

        /// The registry: every `kind` config.toml accepts, in order, one entry a vendor module.
        pub const REGISTRY: &[Vendor] = &[$($module::VENDOR,)+];

        /// The adapter for a vendor kind.
        pub fn for_kind(kind: VendorKind) -> Box<dyn Adapter> {
            match kind {
                $($(VendorKind::$variant => Box::new($adapter),)+)+
            }
        }
    };
}

// One line a vendor (see docs/vendors.md, "Adding a vendor"): its module, then each adapter kind its
// settings may pick, with the adapter and its name in messages.
registry! {
    spacebring => [Spacebring = spacebring::Spacebring, "Spacebring"];
    partnero => [Partnero = partnero::Partnero, "Partnero"];
    moltin => [Moltin = moltin::Moltin, "Moltin"];
    limio => [LimioV2 = limio::LimioV2, "Limio v2"; LimioV3 = limio::LimioV3, "Limio v3"];
    r#loop => [Loop = r#loop::Loop, "Loop"];
}

/// Every adapter, in docs/vendors.md's table's order.
pub fn all() -> Vec<Box<dyn Adapter>> {
    VendorKind::ALL.into_iter().map(for_kind).collect()
}

/// The `Content-Type` every vendor here takes.
pub(crate) fn json_headers() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "application/json".into())]
}

/// `Accept: application/json`, which the lifecycle documents of Partnero, Moltin and Limio list
/// for every call after create.
pub(crate) fn accept_json() -> (String, String) {
    ("Accept".into(), "application/json".into())
}

/// The vendor's id of a created code, as one path segment of a revoke call. The id comes from
/// the ledger, which took it from the vendor's create answer; it is still checked as a mapping
/// id is, so a damaged record can never send the call to another path.
pub(crate) fn id_segment(vendor: VendorKind, vendor_id: &str) -> Result<String, BuildError> {
    check_path_segment(vendor_id).map_err(|rule| BuildError::Invalid {
        field: "vendor_id".into(),
        rule: format!("{vendor}'s id for the code {rule} (got `{vendor_id}`)"),
    })?;
    Ok(path_segment(vendor_id))
}

/// Whether an id taken from a mapping file can be one segment of a URL path. Percent-encoding
/// keeps `/`, `?` and `#` from changing the path, but not a dot segment: every URL parser
/// (RFC 3986 §5.2.4, and the WHATWG parser reqwest uses, which reads `%2E` as `.` too) resolves
/// `.` and `..` away, so `/v2/promotions/../codes` would be sent as `/v2/codes`. An empty id
/// would leave `//` in the path. These are refused where the mapping is read.
pub fn check_path_segment(s: &str) -> Result<(), &'static str> {
    match s {
        "" => Err("must not be empty: it is a path segment of the vendor's URL"),
        "." | ".." => Err("must not be `.` or `..`: URL parsers resolve such a path segment away, so the call would go to another path"),
        _ => Ok(()),
    }
}

/// Percent-encodes one path segment taken from a mapping file, so an id can never change the
/// path it is put into (the mapping has passed [`check_path_segment`], so it is no dot segment).
pub(crate) fn path_segment(s: &str) -> String {
    debug_assert!(check_path_segment(s).is_ok(), "{s:?} is not a path segment");
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
