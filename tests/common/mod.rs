//! The harness every integration test shares: the real router, built from a real config file
//! and real mapping files in a temporary directory, served on a loopback port, with wiremock
//! servers standing in for the vendors.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;

use serde_json::Value;
use tempfile::TempDir;

/// A running gateway. Dropping it stops nothing explicitly; the runtime ends with the test.
pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    _dir: TempDir,
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

/// Starts the gateway on `config` (upstream tables; a [server] table is added), with mapping
/// files `(campaign, toml)` and the environment `env`.
pub async fn start(config: &str, mappings: &[(&str, &str)], env: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    for (name, text) in mappings {
        std::fs::write(dir.path().join("mappings").join(format!("{name}.toml")), text).unwrap();
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("[server]\nmax_body_bytes = 16384\n\n{config}")).unwrap();
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (_, router) = promo_gateway::app_from_file(&path, &move |k: &str| env.get(k).cloned()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Gateway {
        base,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Gateway {
    /// POSTs a JSON body to /v1/promo-codes; returns the status and the parsed body.
    pub async fn create(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/promo-codes", body.to_string()).await
    }

    pub async fn dry_run(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/promo-codes?dry_run=true", body.to_string()).await
    }

    /// POSTs raw text, for bodies that are not JSON.
    pub async fn post(&self, path: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
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
