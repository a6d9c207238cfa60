//! The repository's own config.toml and mappings/ (what the README tells people to start with)
//! load as they are, with no credential set, and the gateway says what is missing.

use std::path::PathBuf;

use serde_json::{json, Value};

/// Serves the router built from the repository's real files, with an empty environment.
async fn start_default() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let (config, router) = promo_gateway::app_from_file(&path, &|_: &str| None)
        .unwrap_or_else(|e| panic!("the repository's config.toml does not load: {e}"));
    assert_eq!(config.upstreams.len(), 6);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

#[tokio::test]
async fn the_default_config_loads_and_health_lists_six_unconfigured_upstreams() {
    let base = start_default().await;
    let r = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let health: Value = r.json().await.unwrap();
    assert_eq!(
        health,
        json!({
            "status": "degraded",
            "upstreams": {
                "spacebring": {
                    "vendor": "spacebring", "configured": false,
                    "missing": ["SPACEBRING_API_KEY", "SPACEBRING_API_SECRET"]
                },
                "partnero": { "vendor": "partnero", "configured": false, "missing": ["PARTNERO_API_KEY"] },
                "moltin": { "vendor": "moltin", "configured": false, "missing": ["MOLTIN_ACCESS_TOKEN"] },
                "limio-v2": {
                    "vendor": "limio_v2", "configured": false,
                    "missing": ["LIMIO_CLIENT_ID", "LIMIO_CLIENT_SECRET"]
                },
                "limio-v3": {
                    "vendor": "limio_v3", "configured": false,
                    "missing": ["LIMIO_CLIENT_ID", "LIMIO_CLIENT_SECRET"]
                },
                "loop": { "vendor": "loop", "configured": false, "missing": ["LOOP_API_TOKEN"] }
            }
        })
    );
}

/// The example campaign maps all six upstreams: a dry run for it plans a request for each
/// (none of them refused by the mapping), and reports each unconfigured, naming its variables.
#[tokio::test]
async fn the_example_campaign_reaches_all_six_upstreams_in_a_dry_run() {
    let base = start_default().await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/promo-codes?dry_run=true"))
        .json(&json!({
            "code": "SPRING-20",
            "campaign": "example",
            "discount": { "percent_off": 20 }
        }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
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
