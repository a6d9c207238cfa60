//! An upstream's vendor settings: the keys of `[upstreams.NAME]` that belong to its adapter
//! (`version`, `network_id`, `currency`, `timezone`), which kinds take them, and their rules.
//!
//! The gateway's config reads the keys as plain typed values (so a malformed one is reported by
//! the TOML reader with its line) and hands them here; each vendor module declares, in its
//! [`Vendor`] entry of [`crate::vendors::REGISTRY`], which keys it takes and how they choose and
//! check its adapter. Nothing here reads a file.

use chrono_tz::Tz;
use serde::Deserialize;

use crate::adapter::VendorKind;
use crate::money::Currency;

/// The settings keys, in the order their rules are checked (the first broken one is reported).
pub const KEYS: [&str; 4] = ["version", "network_id", "currency", "timezone"];

/// Which of a vendor's promo-code APIs the tenant speaks (`version = "v2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiVersion {
    V2,
    V3,
}

/// How the upstream authenticates; some settings are required with some schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Basic,
    Oauth2,
}

/// The vendor settings of one `[upstreams.NAME]`, as written (absent keys `None`).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub version: Option<ApiVersion>,
    pub network_id: Option<&'a str>,
    pub currency: Option<Currency>,
    pub timezone: Tz,
    pub auth: AuthScheme,
}

impl Settings<'_> {
    /// Whether `key` (one of [`KEYS`]) was written. `timezone` always has a value (UTC).
    fn given(&self, key: &str) -> bool {
        match key {
            "version" => self.version.is_some(),
            "network_id" => self.network_id.is_some(),
            "currency" => self.currency.is_some(),
            _ => false,
        }
    }
}

/// A settings key that breaks its vendor's rule: `upstreams.NAME.{key}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub key: &'static str,
    pub message: String,
}

/// One `kind` of config.toml: the vendor's settings and how they choose its adapter.
#[derive(Debug, Clone, Copy)]
pub struct Vendor {
    /// The `kind = "..."` name.
    pub kind: &'static str,
    /// The vendor's name in messages ("Limio").
    pub name: &'static str,
    /// The settings keys (of [`KEYS`]) this vendor takes.
    pub takes: &'static [&'static str],
    /// Checks the settings this vendor takes and picks its adapter kind.
    pub configure: fn(&Settings<'_>) -> Result<VendorKind, SettingError>,
}

/// What a key that a vendor does not take is: "only Limio upstreams have {what}".
fn what(key: &str) -> &'static str {
    match key {
        "version" => "a version",
        "network_id" => "a network id",
        "currency" => "a currency (their amounts carry none)",
        _ => "this setting",
    }
}

/// The vendor whose `kind` is `kind`.
pub fn vendor(kind: &str) -> Option<&'static Vendor> {
    crate::vendors::REGISTRY.iter().find(|v| v.kind == kind)
}

/// Every `kind` name, in the registry's order.
pub fn kinds() -> &'static [&'static str] {
    static KINDS: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| crate::vendors::REGISTRY.iter().map(|v| v.kind).collect());
    &KINDS
}

/// Checks an upstream's settings against its vendor's rules and picks the adapter kind. The
/// first key of [`KEYS`] at fault is reported: a key this vendor does not take, or one its
/// rules refuse.
pub fn configure(vendor: &Vendor, settings: &Settings<'_>) -> Result<VendorKind, SettingError> {
    let foreign = KEYS
        .iter()
        .position(|key| settings.given(key) && !vendor.takes.contains(key));
    let chosen = (vendor.configure)(settings);
    let own = chosen
        .as_ref()
        .err()
        .and_then(|e| KEYS.iter().position(|k| *k == e.key));
    match (foreign, own) {
        (Some(f), o) if o.is_none_or(|o| f < o) => {
            let key = KEYS[f];
            let mut names: Vec<&str> = crate::vendors::REGISTRY
                .iter()
                .filter(|v| v.takes.contains(&key))
                .map(|v| v.name)
                .collect();
            names.sort_unstable();
            names.dedup();
            let names = match names.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => "no".to_owned(),
            };
            Err(SettingError {
                key,
                message: format!("only {names} upstreams have {}", what(key)),
            })
        }
        _ => chosen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(auth: AuthScheme) -> Settings<'static> {
        Settings {
            version: None,
            network_id: None,
            currency: None,
            timezone: Tz::UTC,
            auth,
        }
    }

    fn configured(kind: &str, s: &Settings<'_>) -> Result<VendorKind, SettingError> {
        configure(vendor(kind).expect("a registered kind"), s)
    }

    #[test]
    fn every_kind_is_registered_once() {
        let mut kinds = kinds().to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), crate::vendors::REGISTRY.len());
    }

    #[test]
    fn a_key_the_vendor_does_not_take_names_the_vendors_that_do() {
        let s = Settings {
            currency: Some(Currency::parse("USD").unwrap()),
            ..settings(AuthScheme::Basic)
        };
        let e = configured("moltin", &s).unwrap_err();
        assert_eq!(e.key, "currency");
        assert_eq!(
            e.message,
            "only Loop and Partnero upstreams have a currency (their amounts carry none)"
        );
        assert_eq!(configured("loop", &s), Ok(VendorKind::Loop));
    }

    #[test]
    fn the_first_key_at_fault_is_reported() {
        // Limio's own rule on `version` comes before the foreign `network_id`.
        let s = Settings {
            network_id: Some("abc"),
            ..settings(AuthScheme::Basic)
        };
        assert_eq!(configured("limio", &s).unwrap_err().key, "version");
        let s = Settings {
            version: Some(ApiVersion::V3),
            ..s
        };
        assert_eq!(
            configured("limio", &s).unwrap_err().message,
            "only Spacebring upstreams have a network id"
        );
        let s = Settings { network_id: None, ..s };
        assert_eq!(configured("limio", &s), Ok(VendorKind::LimioV3));
    }
}
