//! The repository's own config.toml and mappings/ (what the README tells people to start with)
//! load as they are, with no credential set, and the gateway says what is missing.

mod common;

use std::path::PathBuf;

use serde_json::json;

/// Serves the router built from the repository's real config.toml and mappings/, with an
/// empty environment. They are copied into a temporary directory first, so that the ledger the
/// config names is created there and not in the working tree.
async fn start_default() -> (tempfile::TempDir, common::Gateway) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo.join("config.toml"), dir.path().join("config.toml")).unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    for entry in std::fs::read_dir(repo.join("mappings")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("mappings").join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("config.toml");
    let (config, router) = promo_gateway::app_from_file(&path, &|_: &str| None)
        .unwrap_or_else(|e| panic!("the repository's config.toml does not load: {e}"));
    assert_eq!(config.upstreams.len(), 6);
    assert!(
        dir.path().join("promo-gateway.db").exists(),
        "the default ledger is created beside the config"
    );
    (dir, common::serve(router).await)
}

#[tokio::test]
async fn the_default_config_loads_and_health_lists_six_unconfigured_upstreams() {
    let (_dir, gw) = start_default().await;
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        health,
        json!({
            "status": "degraded",
            "ledger": { "status": "ok", "backend": "sqlite" },
            "upstreams": {
                "spacebring": {
                    "vendor": "spacebring", "configured": false, "breaker": "closed", "rate_limit_backend": "local",
                    "missing": ["SPACEBRING_API_KEY", "SPACEBRING_API_SECRET"]
                },
                "partnero": { "vendor": "partnero", "configured": false, "breaker": "closed", "rate_limit_backend": "local", "missing": ["PARTNERO_API_KEY"] },
                "moltin": { "vendor": "moltin", "configured": false, "breaker": "closed", "rate_limit_backend": "local", "missing": ["MOLTIN_ACCESS_TOKEN"] },
                "limio-v2": {
                    "vendor": "limio_v2", "configured": false, "breaker": "closed", "rate_limit_backend": "local",
                    "missing": ["LIMIO_CLIENT_ID", "LIMIO_CLIENT_SECRET"]
                },
                "limio-v3": {
                    "vendor": "limio_v3", "configured": false, "breaker": "closed", "rate_limit_backend": "local",
                    "missing": ["LIMIO_CLIENT_ID", "LIMIO_CLIENT_SECRET"]
                },
                "loop": { "vendor": "loop", "configured": false, "breaker": "closed", "rate_limit_backend": "local", "missing": ["LOOP_API_TOKEN"] }
            }
        })
    );
}

/// The example campaign maps all six upstreams: a dry run for it plans a request for each
/// (none of them refused by the mapping), and reports each unconfigured, naming its variables.
#[tokio::test]
async fn the_example_campaign_reaches_all_six_upstreams_in_a_dry_run() {
    let (_dir, gw) = start_default().await;
    let (status, body) = gw
        .dry_run(&json!({
            "code": "SPRING-20",
            "campaign": "example",
            "discount": { "percent_off": 20 }
        }))
        .await;
    assert_eq!(status, 422, "nothing can be sent without credentials: {body}");
    let results = body["results"].as_array().unwrap();
    let mut names: Vec<&str> = results.iter().map(|r| r["upstream"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["limio-v2", "limio-v3", "loop", "moltin", "partnero", "spacebring"],
        "{body}"
    );
    let vars = [
        ("spacebring", "SPACEBRING_API_KEY"),
        ("partnero", "PARTNERO_API_KEY"),
        ("moltin", "MOLTIN_ACCESS_TOKEN"),
        ("limio-v2", "LIMIO_CLIENT_ID"),
        ("limio-v3", "LIMIO_CLIENT_ID"),
        ("loop", "LOOP_API_TOKEN"),
    ];
    for (name, var) in vars {
        let r = results.iter().find(|r| r["upstream"] == name).unwrap();
        assert_eq!(r["status"], "unconfigured", "{name}: {r}");
        assert_eq!(r["error"]["kind"], "missing_credentials", "{name}: {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(var), "{name}: {r}");
        assert_eq!(r["attempts"], 0, "{name}: {r}");
        // The mapping was good enough to build the vendor request, shown without credentials.
        let request = &r["request"];
        assert_eq!(request["method"], "POST", "{name}: {r}");
        assert_eq!(
            request["headers"]["Authorization"], "[credentials missing]",
            "{name}: {r}"
        );
        assert!(request["body"].is_object(), "{name}: {r}");
    }
}

/// Starts the router from a config file holding only `upstream`, and returns the start-up error.
fn startup_error(upstream: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, upstream).unwrap();
    match promo_gateway::app_from_file(&path, &|_: &str| None) {
        Ok(_) => panic!("the gateway started on a bad config:\n{upstream}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unknown_account_currency_stops_start_up_naming_the_key() {
    let e = startup_error(&common::upstream(
        "loop",
        "loop",
        "http://127.0.0.1:9",
        "currency = \"XYZ\"",
    ));
    assert!(e.contains("upstreams.loop.currency"), "{e}");
    assert!(e.contains("XYZ") && e.contains("ISO 4217"), "{e}");
    assert!(e.contains("config.toml"), "names the file: {e}");

    // Lower case is not a code either: the same rule as a request's currency.
    let e = startup_error(&common::upstream(
        "partnero",
        "partnero",
        "http://127.0.0.1:9",
        "currency = \"usd\"",
    ));
    assert!(e.contains("upstreams.partnero.currency"), "{e}");
}

#[test]
fn an_account_currency_on_a_vendor_whose_amounts_carry_one_stops_start_up() {
    let e = startup_error(&common::upstream(
        "moltin",
        "moltin",
        "http://127.0.0.1:9",
        "currency = \"USD\"",
    ));
    assert!(
        e.contains("upstreams.moltin.currency") && e.contains("only Loop and Partnero"),
        "{e}"
    );
}

/// The slow-client limits have defaults, and none may be 0 (a 0 timeout would drop every
/// client, a 0 cap serve none).
#[test]
fn the_slow_client_limits_default_and_refuse_zero() {
    let config = promo_gateway::Config::parse("").unwrap();
    let s = &config.server;
    assert_eq!(
        (
            s.header_read_timeout_ms,
            s.body_read_timeout_ms,
            s.upload_read_timeout_ms,
            s.max_connections
        ),
        (10_000, 30_000, 600_000, 1024)
    );
    for key in [
        "header_read_timeout_ms",
        "body_read_timeout_ms",
        "upload_read_timeout_ms",
        "max_connections",
    ] {
        let err = promo_gateway::Config::parse(&format!("[server]\n{key} = 0\n")).unwrap_err();
        assert!(err.contains(&format!("server.{key}: must be at least 1")), "{err}");
    }
}

/// config.toml's comment on `kind` lists the vendor kinds the registry knows, in its order: a
/// kind added to `adapters/src/vendors` shows there, and none is listed that is not.
#[test]
fn config_toml_lists_the_registry_kinds() {
    let config = include_str!("../config.toml");
    let line = config
        .lines()
        .find(|l| l.starts_with("#   kind "))
        .expect("config.toml documents the `kind` key");
    let listed = line.trim_start_matches("#   kind").trim();
    let kinds: Vec<&str> = promo_adapters::vendors::REGISTRY.iter().map(|v| v.kind).collect();
    let expected = kinds.join(" | ");
    assert_eq!(
        listed, expected,
        "config.toml's `kind` comment is stale: make it `#   kind          {expected}`"
    );
}
