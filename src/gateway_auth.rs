//! Gateway authentication: who may call this gateway, and what each caller may do. This
//! module holds the keys and scopes as configured; the HTTP layer's `http::gateway_auth`
//! checks them on every request.
//!
//! Clients present an API key as `Authorization: Bearer <key>` (the only place a key is read).
//! The config names each key by the environment variable that holds it (`key_env`), or gives the
//! SHA-256 of the key (`sha256`) for operators who keep the key itself out of the gateway's
//! environment. At start-up every key becomes a SHA-256 digest; the key itself is dropped, never
//! logged, and a presented key is compared by its digest against every configured digest in
//! constant time.
//!
//! Scopes per route (the dry run needs what a create needs):
//!
//! | route                                                         | scope              |
//! |---------------------------------------------------------------|--------------------|
//! | `POST /v1/promo-codes` (also `?dry_run=true`)                 | `promo-codes:write`|
//! | `GET /v1/promo-codes`, `GET /v1/promo-codes/{code}`, `GET /v1/requests/{id}` | `promo-codes:read` |
//! | `POST /v1/sync-jobs`, `POST /v1/sync-jobs/{id}/retry`, `.../cancel` | `sync-jobs:write` |
//! | `GET /v1/sync-jobs/{id}`, `GET /v1/sync-jobs/{id}/results`    | `sync-jobs:read`   |
//! | `GET /metrics`                                                | `metrics:read`     |
//! | `GET /health`, `GET /openapi.json`                            | none: always open  |
//! | anything else (answered 404/405)                              | any valid key      |
//!
//! With no key configured the API is open; `serve` then refuses to listen on an address that is
//! not loopback ([`require_on`]).

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::StartupError;

/// What a key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Scope {
    #[serde(rename = "promo-codes:write")]
    PromoCodesWrite,
    #[serde(rename = "promo-codes:read")]
    PromoCodesRead,
    #[serde(rename = "sync-jobs:write")]
    SyncJobsWrite,
    #[serde(rename = "sync-jobs:read")]
    SyncJobsRead,
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::PromoCodesWrite,
        Scope::PromoCodesRead,
        Scope::SyncJobsWrite,
        Scope::SyncJobsRead,
        Scope::MetricsRead,
    ];

    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PromoCodesWrite => "promo-codes:write",
            Scope::PromoCodesRead => "promo-codes:read",
            Scope::SyncJobsWrite => "sync-jobs:write",
            Scope::SyncJobsRead => "sync-jobs:read",
            Scope::MetricsRead => "metrics:read",
        }
    }
}

/// A SHA-256 digest of a key. Its `Debug` prints nothing of it.
#[derive(Clone, Copy)]
pub struct KeyDigest([u8; 32]);

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

impl KeyDigest {
    /// The digest of a presented key.
    pub(crate) fn of(key: &[u8]) -> Self {
        Self(Sha256::digest(key).into())
    }

    /// Whether two digests are equal, compared in constant time.
    pub(crate) fn matches(&self, other: &KeyDigest) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }

    fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(out))
    }
}

/// One `[[server.api_keys]]` entry: a name (for logs and 403s), where the key comes from, and
/// its scopes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    /// The environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Or: the key's SHA-256, 64 hex digits.
    #[serde(default)]
    pub sha256: Option<String>,
    pub scopes: Vec<Scope>,
    /// The key's digest, once [`resolve`] read `key_env`.
    #[serde(skip)]
    digest: Option<KeyDigest>,
}

impl ApiKeyConfig {
    /// The key's digest: read from `key_env` by [`resolve`], or given as `sha256`; `None` while
    /// neither is known (such a key matches nothing).
    pub(crate) fn digest(&self) -> Option<KeyDigest> {
        self.digest
            .or_else(|| self.sha256.as_deref().and_then(KeyDigest::from_hex))
    }
}

/// Rules serde cannot express, each naming its key (called from `Config::check`).
pub fn check(keys: &[ApiKeyConfig]) -> Result<(), String> {
    for (i, k) in keys.iter().enumerate() {
        let at = |field: &str| format!("server.api_keys[{i}].{field}");
        if k.name.trim().is_empty() {
            return Err(format!("{}: must not be empty", at("name")));
        }
        if keys[..i].iter().any(|o| o.name == k.name) {
            return Err(format!("{}: `{}` names two keys", at("name"), k.name));
        }
        match (&k.key_env, &k.sha256) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "server.api_keys[{i}] ({}): give key_env or sha256, not both",
                    k.name
                ))
            }
            (None, None) => {
                return Err(format!(
                "server.api_keys[{i}] ({}): needs key_env (the variable holding the key) or sha256 (the key's SHA-256)",
                k.name
            ))
            }
            (Some(var), None) if var.trim().is_empty() => return Err(format!("{}: must not be empty", at("key_env"))),
            (None, Some(hex)) if KeyDigest::from_hex(hex).is_none() => {
                return Err(format!("{}: must be 64 hexadecimal digits (a SHA-256)", at("sha256")))
            }
            _ => {}
        }
        if k.scopes.is_empty() {
            let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            return Err(format!(
                "{}: must list at least one of {}",
                at("scopes"),
                all.join(", ")
            ));
        }
    }
    Ok(())
}

/// Reads every `key_env` through `env` and keeps only the key's digest. A variable that is
/// unset or empty stops start-up, named.
pub fn resolve(keys: &mut [ApiKeyConfig], env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    for (i, k) in keys.iter_mut().enumerate() {
        if let Some(var) = &k.key_env {
            let Some(key) = env(var).filter(|v| !v.is_empty()).map(SecretString::from) else {
                return Err(format!(
                    "server.api_keys[{i}] ({}): the environment variable {var} holding its key is not set",
                    k.name
                ));
            };
            k.digest = Some(KeyDigest::of(key.expose_secret().as_bytes()));
        }
    }
    Ok(())
}

/// `serve` refuses a listen address that is not loopback when no key is configured.
pub fn require_on(addr: SocketAddr, keys: &[ApiKeyConfig]) -> Result<(), StartupError> {
    if keys.is_empty() && !addr.ip().to_canonical().is_loopback() {
        return Err(StartupError::Unprotected { addr });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests_parse() {
        let d = KeyDigest::of(b"abc");
        let hex: String = d.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(KeyDigest::from_hex(&hex.to_uppercase()).unwrap().0, d.0);
        assert!(KeyDigest::from_hex("zz").is_none());
    }
}
