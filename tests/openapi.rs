//! The committed `openapi.json` is the description the code generates, and the one the gateway
//! serves. Regenerate it with `cargo run --example openapi > openapi.json`.

mod common;

use serde_json::Value;

fn generated() -> Value {
    serde_json::to_value(promo_gateway::openapi::document()).unwrap()
}

fn committed() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let text = std::fs::read_to_string(path).expect("openapi.json is committed at the repository root");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

#[test]
fn committed_description_is_the_generated_one() {
    assert!(
        committed() == generated(),
        "openapi.json is stale: run `cargo run --example openapi > openapi.json`"
    );
}

#[test]
fn description_is_openapi_3_1_and_covers_every_route() {
    let doc = generated();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations: Vec<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            "GET /health",
            "GET /openapi.json",
            "GET /v1/promo-codes",
            "GET /v1/promo-codes/{code}",
            "GET /v1/requests/{id}",
            "GET /v1/sync-jobs/{id}",
            "GET /v1/sync-jobs/{id}/results",
            "POST /v1/promo-codes",
            "POST /v1/sync-jobs",
            "POST /v1/sync-jobs/{id}/cancel",
            "POST /v1/sync-jobs/{id}/retry",
        ]
    );
    // Every error answer is problem+json (a 422/502 of a create may also carry per-target results).
    let responses = &doc["components"]["responses"];
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let response = match response.get("$ref").and_then(Value::as_str) {
                    Some(r) => &responses[r.trim_start_matches("#/components/responses/")],
                    None => response,
                };
                let content = response["content"].as_object().unwrap();
                let problem = content.get("application/problem+json");
                let per_target =
                    (path == "/v1/promo-codes" && method == "post" && ["422", "502"].contains(&status.as_str()))
                        .then(|| content.get("application/json"))
                        .flatten();
                assert!(
                    problem.or(per_target).is_some(),
                    "{method} {path} {status} is not documented as problem+json: {response}"
                );
                if let Some(p) = problem {
                    assert_eq!(
                        p["schema"]["$ref"], "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    let mut required: Vec<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["detail", "errors", "status", "title", "type"]);
}

#[tokio::test]
async fn gateway_serves_the_committed_description() {
    let gw = common::start("", &[], &[]).await;
    let raw = gw.get_raw("/openapi.json").await;
    assert_eq!(raw.status, 200);
    assert!(raw.content_type.starts_with("application/json"), "{}", raw.content_type);
    let served: Value = serde_json::from_str(&raw.text).unwrap();
    assert!(
        served == committed(),
        "the served description differs from openapi.json"
    );
}
