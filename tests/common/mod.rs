//! The harness every integration test shares: the real router, built from a real config file
//! and real mapping files in a temporary directory, served on a loopback port, with wiremock
//! servers standing in for the vendors. Submodules: `vendors` (the wiremock vendors: documented
//! calls and answers, token endpoints, catch-alls; re-exported here), `jobs` (sync jobs),
//! `problems` (problem+json readers), `ledger` (the ledger's files), `binary` (the real binary),
//! `redis` (a real redis-server) and `postgres` (a real PostgreSQL server).
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;

pub mod binary;
pub mod jobs;
pub mod ledger;
pub mod postgres;
pub mod problems;
pub mod redis;
pub mod tls;
pub mod vendors;

#[allow(unused_imports)] // not every test binary mocks a vendor
pub use vendors::*;

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

/// A running gateway. Dropping it stops nothing explicitly; the runtime ends with the test.
pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    _dir: Option<TempDir>,
}

/// One `[upstreams.NAME]` table pointing at `base_url`, with extra TOML lines (auth, version...).
/// Rate limits are generous unless `extra` sets its own.
pub fn upstream(name: &str, kind: &str, base_url: &str, extra: &str) -> String {
    let mut t = format!("[upstreams.{name}]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\n{extra}\n");
    if !extra.contains("rate_limit") {
        t.push_str("rate_limit = { per_second = 1000, burst = 1000 }\n");
    }
    if !extra.contains("auth") {
        t.push_str(&format!(
            "auth = {{ scheme = \"bearer\", token_env = \"{}_TOKEN\" }}\n",
            env_prefix(name)
        ));
    }
    if !extra.contains("timeout_ms") {
        t.push_str("timeout_ms = 2000\n");
    }
    if !extra.contains("retry") {
        t.push_str("retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50 }\n");
    }
    t
}

/// `loop` -> `LOOP`, `limio-v2` -> `LIMIO_V2`: the default token variable is `<PREFIX>_TOKEN`.
pub fn env_prefix(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The `auth = {...}` line for OAuth2 client credentials at `token_url`, the client's id and
/// secret read from `id_env` and `secret_env`; `more` adds keys inside the table (it starts with
/// a comma, e.g. `, scopes = ["x"]`).
pub fn oauth2_client_credentials(token_url: &str, id_env: &str, secret_env: &str, more: &str) -> String {
    format!(
        "auth = {{ scheme = \"oauth2\", grant = \"client_credentials\", token_url = \"{token_url}\", \
         client_id_env = \"{id_env}\", client_secret_env = \"{secret_env}\"{more} }}"
    )
}

/// The `spring` campaign for Loop (its own discount) and Partnero (a coupon granting 20% off).
pub const SPRING_LOOP_PARTNERO: &str = r#"
[upstreams.loop]

[upstreams.partnero]
coupon_uuid = "coupon_spring"
discount = { percent_off = 20 }
"#;

/// Writes `<dir>/config.toml` (`config` after a [server] table) and `<dir>/mappings/<name>.toml`
/// for each `(name, toml)`; returns the config file's path.
pub fn write_files(dir: &Path, config: &str, mappings: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir(dir.join("mappings")).unwrap();
    for (name, text) in mappings {
        std::fs::write(dir.join("mappings").join(format!("{name}.toml")), text).unwrap();
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[server]\nmax_body_bytes = 16384\n\n{config}")).unwrap();
    path
}

/// Starts the gateway on `config` (upstream tables; a [server] table is added), with mapping
/// files `(campaign, toml)` and the environment `env`.
pub async fn start(config: &str, mappings: &[(&str, &str)], env: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let path = write_files(dir.path(), config, mappings);
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app_from_file(&path, &move |k: &str| env.get(k).cloned()).unwrap();
    let mut gw = serve(router).await;
    gw._dir = Some(dir);
    gw
}

/// Serves `router` on a loopback port.
pub async fn serve(router: axum::Router) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Gateway::at(base)
}

/// One answer as it came: status, Content-Type (empty if none) and the body's text.
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

/// The value of header `name` in `response`, if it has one.
pub fn header_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

impl Raw {
    async fn from(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let content_type = header_of(&r, "content-type").unwrap_or_default();
        let text = r.text().await.unwrap();
        Raw {
            status,
            content_type,
            text,
        }
    }
}

impl Gateway {
    /// A client for a gateway listening at `base` (e.g. the real binary).
    pub fn at(base: String) -> Self {
        Gateway {
            base,
            http: reqwest::Client::new(),
            _dir: None,
        }
    }

    /// POSTs a JSON body to /v1/promo-codes; returns the status and the parsed body.
    pub async fn create(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/promo-codes", body.to_string()).await
    }

    pub async fn dry_run(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/promo-codes?dry_run=true", body.to_string()).await
    }

    /// POSTs every body to /v1/promo-codes at once; the answers in the order of `bodies`.
    pub async fn create_all(&self, bodies: &[Value]) -> Vec<(u16, Value)> {
        futures::future::join_all(bodies.iter().map(|b| self.create(b))).await
    }

    /// POSTs raw text, for bodies that are not JSON.
    pub async fn post(&self, path: &str, body: String) -> (u16, Value) {
        let raw = self.post_raw(path, body).await;
        (
            raw.status,
            serde_json::from_str(&raw.text).unwrap_or(Value::String(raw.text)),
        )
    }

    /// POSTs raw text as `application/json`; the answer unparsed.
    pub async fn post_raw(&self, path: &str, body: String) -> Raw {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Raw::from(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let raw = self.get_raw(path).await;
        (raw.status, serde_json::from_str(&raw.text).unwrap())
    }

    pub async fn get_raw(&self, path: &str) -> Raw {
        Raw::from(self.http.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    /// How many tokens `upstream` has fetched, as /health (answering 200) reports it.
    pub async fn token_fetches(&self, upstream: &str) -> u64 {
        let (status, health) = self.get("/health").await;
        assert_eq!(status, 200, "{health}");
        health["upstreams"][upstream]["token_fetches"]
            .as_u64()
            .unwrap_or_else(|| panic!("no token_fetches for {upstream} in {health}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------------

/// The request for one 20%-off code sent to `targets`.
pub fn percent20(code: &str, targets: &[&str]) -> Value {
    json!({ "code": code, "discount": { "percent_off": 20 }, "targets": targets })
}

/// `base` with the members of `extra` added (or replaced).
pub fn merged(mut base: Value, extra: Value) -> Value {
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    base
}

/// The result for one upstream in a create response.
pub fn result<'a>(body: &'a Value, upstream: &str) -> &'a Value {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .find(|r| r["upstream"] == upstream)
        .unwrap_or_else(|| panic!("no result for {upstream} in {body}"))
}

/// The fields a result's warnings name, in order.
pub fn warning_fields(result: &Value) -> Vec<&str> {
    result["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings array in {result}"))
        .iter()
        .map(|w| w["field"].as_str().unwrap())
        .collect()
}

/// The message of the warning naming `field`.
pub fn warning<'a>(result: &'a Value, field: &str) -> &'a str {
    result["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["field"] == field)
        .unwrap_or_else(|| panic!("no warning for {field} in {result}"))["message"]
        .as_str()
        .unwrap()
}

/// Fails if any of `secrets` appears in `text`.
pub fn assert_hides(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "`{secret}` leaked into a response: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// A gateway on a clock the test moves
// ---------------------------------------------------------------------------------------------

/// [`start`] on `clock`: every wait a vendor imposes (Retry-After pauses, back-off, breaker
/// cool-downs) is measured on it, so a test holding a `ManualClock` moves time by hand.
pub async fn start_with_clock(
    config: &str,
    mappings: &[(&str, &str)],
    env: &[(&str, &str)],
    clock: promo_gateway::clock::SharedClock,
) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let path = write_files(dir.path(), config, mappings);
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app(&path, &move |k: &str| env.get(k).cloned(), clock).unwrap();
    let mut gw = serve(router).await;
    gw._dir = Some(dir);
    gw
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys and calls held in flight
// ---------------------------------------------------------------------------------------------

impl Gateway {
    /// POSTs a create with an `Idempotency-Key`: the status, the `idempotent-replayed` header
    /// (if any) and the parsed body.
    pub async fn create_with_key(&self, key: &str, body: &Value) -> (u16, Option<String>, Value) {
        self.create_with_key_raw(key, body.to_string()).await
    }

    /// [`Gateway::create_with_key`] with the body's text as given (another layout of one JSON).
    pub async fn create_with_key_raw(&self, key: &str, body: String) -> (u16, Option<String>, Value) {
        let r = self
            .http
            .post(format!("{}/v1/promo-codes", self.base))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let replayed = header_of(&r, "idempotent-replayed");
        let text = r.text().await.unwrap();
        (
            status,
            replayed,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Listings
// ---------------------------------------------------------------------------------------------

impl Gateway {
    /// Every item of the paged listing at `path` (its query included; `&cursor=` is added),
    /// following `next_cursor`; every page must answer 200.
    pub async fn all_items(&self, path: &str) -> Vec<Value> {
        self.pages(path, usize::MAX).await.concat()
    }

    /// The items of each page of the listing at `path` (its query included; `&cursor=` is added),
    /// following `next_cursor`; every page must answer 200, and fewer than `max_pages` pages may
    /// be followed by another (else the cursor does not advance).
    pub async fn pages(&self, path: &str, max_pages: usize) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut p = path.to_owned();
            if let Some(c) = &cursor {
                p.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get(&p).await;
            assert_eq!(status, 200, "{page}");
            pages.push(
                page["items"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no items in {page}"))
                    .clone(),
            );
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => return pages,
            }
            assert!(pages.len() < max_pages, "the cursor does not advance");
        }
    }
}
