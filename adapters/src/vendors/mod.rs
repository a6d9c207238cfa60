//! One module a vendor. Each holds the vendor's typed request and response shapes and the
//! conversions to and from the unified model, following its document in
//! `shared/vendor-docs/` to the letter.

pub mod limio;
pub mod r#loop;
pub mod moltin;
pub mod partnero;
pub mod spacebring;

use crate::adapter::{Adapter, VendorKind};
use crate::settings::Vendor;

/// The registry: every `kind` config.toml accepts, one line a vendor (see the README's "Adding a
/// vendor"). Each entry, declared in its vendor's module, names the settings it takes and picks
/// its adapter kind from them.
pub const REGISTRY: &[Vendor] = &[
    spacebring::VENDOR,
    partnero::VENDOR,
    moltin::VENDOR,
    limio::VENDOR,
    r#loop::VENDOR,
];

/// The adapter for a vendor kind.
pub fn for_kind(kind: VendorKind) -> Box<dyn Adapter> {
    match kind {
        VendorKind::Spacebring => Box::new(spacebring::Spacebring),
        VendorKind::Partnero => Box::new(partnero::Partnero),
        VendorKind::Moltin => Box::new(moltin::Moltin),
        VendorKind::LimioV2 => Box::new(limio::LimioV2),
        VendorKind::LimioV3 => Box::new(limio::LimioV3),
        VendorKind::Loop => Box::new(r#loop::Loop),
    }
}

/// Every adapter, in the README table's order.
pub fn all() -> Vec<Box<dyn Adapter>> {
    VendorKind::ALL.into_iter().map(for_kind).collect()
}

/// The `Content-Type` every vendor here takes.
pub(crate) fn json_headers() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "application/json".into())]
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
