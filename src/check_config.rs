//! `promo-gateway check-config`: validates the config and every campaign mapping without
//! serving, opening the ledger or calling any vendor, then reports per upstream whether its
//! credentials are present (names of variables only, never values) and whether each campaign
//! that maps it gives it every key its vendor needs.
//!
//! The mapping check is a dry translation: a sample code with the discount (and duration) the
//! mapping's parent grants is translated for each campaign × mapped upstream, and a
//! [`BuildError::Mapping`] is reported as a problem.

use std::fmt::Write as _;
use std::path::Path;

use promo_adapters::adapter::{translate, BuildContext, BuildError};
use promo_adapters::mapping::UpstreamMapping;
use promo_adapters::model::{Discount, OnUnsupported, PromoCode};
use promo_adapters::money::Percent;

use crate::config::{self, AuthConfig, Config};
use crate::StartupError;

/// What `check-config` prints, and how many problems it found (non-zero: exit 1).
pub struct Report {
    pub text: String,
    pub problems: usize,
}

/// The environment variables an upstream's credentials come from.
pub fn credential_vars(auth: &AuthConfig) -> Vec<&str> {
    match auth {
        AuthConfig::Bearer { token_env } => vec![token_env],
        AuthConfig::Basic {
            username_env,
            password_env,
        } => vec![username_env, password_env],
        AuthConfig::Oauth2 {
            client_id_env,
            client_secret_env,
            refresh_token_env,
            ..
        } => {
            let mut v = vec![client_id_env.as_str(), client_secret_env.as_str()];
            v.extend(refresh_token_env.as_deref());
            v
        }
    }
}

/// A code with what the mapping's parent grants, so that only missing keys can fail.
fn sample(campaign: &str, mapping: &UpstreamMapping) -> PromoCode {
    let discount = mapping.discount.unwrap_or(Discount::Percent(
        Percent::from_hundredths(1_000).expect("10% is a percentage"),
    ));
    PromoCode {
        campaign: Some(campaign.to_owned()),
        duration: mapping.duration,
        ..PromoCode::new("CHECKCONFIG10", discount)
    }
}

/// Loads and checks everything. A config or mapping file that does not parse is an error (the
/// gateway would not start); the rest is reported line by line.
/// `config` is the file as loaded (and, for `check-config --sandbox`, as the sandbox points it).
pub fn check(
    config_path: &Path,
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Report, StartupError> {
    let campaigns = config::load_campaigns(&config.mappings_dir(config_path))?;
    let set = |var: &str| env(var).is_some_and(|v| !v.is_empty());
    let mut out = String::new();
    let mut problems = 0;
    let _ = writeln!(
        out,
        "{}: valid; {} upstream(s), {} campaign mapping(s), {} gateway API key(s)",
        config_path.display(),
        config.upstreams.len(),
        campaigns.len(),
        config.server.api_keys.len()
    );
    for key in &config.server.api_keys {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        match (&key.key_env, &key.sha256) {
            (Some(var), _) if set(var) => {
                let _ = writeln!(out, "api key {}: {var} is set; scopes {}", key.name, scopes.join(", "));
            }
            (Some(var), _) => {
                problems += 1;
                let _ = writeln!(
                    out,
                    "api key {}: PROBLEM: {var} is not set (the gateway will not start)",
                    key.name
                );
            }
            (None, _) => {
                let _ = writeln!(out, "api key {}: by SHA-256; scopes {}", key.name, scopes.join(", "));
            }
        }
    }
    if config.server.api_keys.is_empty() {
        let _ = writeln!(
            out,
            "api keys: none; the API is open and `serve` listens on loopback addresses only"
        );
    }
    for (name, upstream) in &config.upstreams {
        let vendor = upstream.vendor();
        let vars = credential_vars(&upstream.auth);
        let missing: Vec<&str> = vars.iter().copied().filter(|v| !set(v)).collect();
        if missing.is_empty() {
            let _ = writeln!(
                out,
                "upstream {name} ({vendor}): credentials present ({})",
                vars.join(", ")
            );
        } else {
            problems += 1;
            let _ = writeln!(
                out,
                "upstream {name} ({vendor}): PROBLEM: credentials missing: {} not set",
                missing.join(", ")
            );
        }
        if let Some(url) = &upstream.sandbox {
            let _ = writeln!(out, "  sandbox: calls go to the simulated vendor at {url}");
        }
        let adapter = promo_adapters::vendors::for_kind(vendor);
        if let (Some(amounts), None) = (adapter.account_currency_amounts(), upstream.currency) {
            let _ = writeln!(
                out,
                "  note: no currency declared: codes with an amount ({amounts}) are refused until upstreams.{name}.currency names the {vendor} account's currency",
            );
        }
        let mut mapped = false;
        for (campaign_name, campaign) in &campaigns {
            let Some(mapping) = campaign.upstreams.get(name) else {
                continue;
            };
            mapped = true;
            let ctx = BuildContext {
                upstream: name,
                mapping: Some(mapping),
                timezone: upstream.timezone,
                network_id: upstream.network_id.as_deref(),
                currency: upstream.currency,
            };
            let code = sample(campaign_name, mapping);
            match translate(adapter.as_ref(), &code, OnUnsupported::Refuse, None, &ctx) {
                Err(BuildError::Mapping(message)) => {
                    problems += 1;
                    let _ = writeln!(
                        out,
                        "  campaign {campaign_name}: PROBLEM: mapping incomplete: {message}"
                    );
                }
                // Anything else is about the sample code, not the mapping.
                _ => {
                    let _ = writeln!(out, "  campaign {campaign_name}: mapping complete");
                }
            }
        }
        if !mapped {
            let _ = writeln!(out, "  no campaign maps it (requests must name it in targets)");
        }
    }
    for (campaign_name, campaign) in &campaigns {
        for target in campaign.upstreams.keys() {
            if !config.upstreams.contains_key(target) {
                problems += 1;
                let _ = writeln!(
                    out,
                    "campaign {campaign_name}: PROBLEM: maps `{target}`, but the config has no [upstreams.{target}]"
                );
            }
        }
    }
    Ok(Report { text: out, problems })
}

impl Report {
    /// Adds a line of a check made outside this module (the ledger's), a problem or not.
    pub fn add(&mut self, line: &str, problem: bool) {
        self.text.push_str(line);
        self.text.push('\n');
        self.problems += usize::from(problem);
    }

    /// The report with its last line: how many problems it found, over every check.
    pub fn finished(mut self) -> Self {
        if self.problems == 0 {
            self.text.push_str("ok: no problems\n");
        } else {
            let _ = writeln!(self.text, "{} problem(s)", self.problems);
        }
        self
    }
}
