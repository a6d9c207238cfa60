//! The committed `openapi.json` is the description the code generates, and the one the gateway
//! serves. Regenerate it with `cargo run --example openapi > openapi.json`.

mod common;

use serde_json::Value;

fn generated() -> Value {
    serde_json::to_value(promo_gateway::http::openapi::document()).unwrap()
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
            "GET /metrics",
            "GET /openapi.json",
            "GET /v1/promo-codes",
            "GET /v1/promo-codes/{code}",
            "GET /v1/promo-codes/{code}/live",
            "GET /v1/requests/{id}",
            "GET /v1/sync-jobs/{id}",
            "GET /v1/sync-jobs/{id}/results",
            "POST /v1/promo-codes",
            "POST /v1/promo-codes/{code}/revoke",
            "POST /v1/sync-jobs",
            "POST /v1/sync-jobs/{id}/cancel",
            "POST /v1/sync-jobs/{id}/retry",
        ]
    );
    // Every error answer is problem+json (a 422/502 of a create or revoke may also carry
    // per-target results).
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
                let per_target = (["/v1/promo-codes", "/v1/promo-codes/{code}/revoke"].contains(&path.as_str())
                    && method == "post"
                    && ["422", "502"].contains(&status.as_str()))
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

/// A gateway with API keys serves the committed description; one with none (which checks no
/// key) serves it without the security scheme, the requirements and the 401 and 403 answers,
/// and says nowhere that a key is needed.
#[tokio::test]
async fn gateway_serves_the_committed_description_and_an_open_one_claims_no_key() {
    let served = |gw: common::Gateway| async move {
        let raw = gw.get_raw("/openapi.json").await;
        assert_eq!(raw.status, 200);
        assert!(raw.content_type.starts_with("application/json"), "{}", raw.content_type);
        serde_json::from_str::<Value>(&raw.text).unwrap()
    };
    let keyed = common::start(
        "[[server.api_keys]]\nname = \"k\"\nkey_env = \"GW_KEY\"\nscopes = [\"metrics:read\"]\n",
        &[],
        &[("GW_KEY", "some-key")],
    )
    .await;
    assert!(
        served(keyed).await == committed(),
        "the served description differs from openapi.json"
    );

    let open = served(common::start("", &[], &[]).await).await;
    let mut expected = committed();
    expected["components"]
        .as_object_mut()
        .unwrap()
        .remove("securitySchemes");
    let responses = expected["components"]["responses"].as_object_mut().unwrap();
    responses.remove("Unauthorized");
    responses.remove("Forbidden");
    for (_, item) in expected["paths"].as_object_mut().unwrap() {
        for (_, op) in item.as_object_mut().unwrap() {
            let op = op.as_object_mut().unwrap();
            op.insert("security".into(), serde_json::json!([]));
            let responses = op["responses"].as_object_mut().unwrap();
            responses.remove("401");
            responses.remove("403");
            let description = op
                .get("description")
                .and_then(Value::as_str)
                .map(|d| d.split("\n\nNeeds an API key").next().unwrap().to_owned());
            match description {
                Some(d) if !d.starts_with("Needs an API key") => {
                    op.insert("description".into(), Value::String(d));
                }
                _ => {
                    op.remove("description");
                }
            }
        }
    }
    assert_eq!(open, expected);
    let text = open.to_string();
    assert!(!text.contains("Needs an API key"), "{text}");
    assert!(
        text.contains("\"security\":[]") && !text.contains("\"api_key\""),
        "{text}"
    );
}

/// What client generators and linters ask of a description (Redocly's recommended rules, which
/// CI runs on openapi.json): one verb-noun operationId each, a server, security stated on every
/// operation (`[]` on the open ones), a 4xx answer on each, a one-line summary; and links from a
/// create to its code, request, live read and revoke, and from a job to its status, results,
/// cancel and retry.
#[test]
fn every_operation_has_a_unique_operation_id_a_summary_security_and_a_4xx() {
    let doc = committed();
    assert_eq!(doc["servers"][0]["url"], "/", "{}", doc["servers"]);
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no operationId"));
            assert!(
                id.chars().next().unwrap().is_ascii_lowercase() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{at}: `{id}` is not camelCase"
            );
            ids.push(id.to_owned());
            let summary = op["summary"].as_str().unwrap_or_else(|| panic!("{at}: no summary"));
            assert!(
                !summary.contains('\n') && summary.len() <= 60 && !summary.ends_with('.'),
                "{at}: the summary is one short line: {summary:?}"
            );
            assert!(op["security"].is_array(), "{at}: security is not stated");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('4')), "{at}: no 4xx answer");
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operationIds repeat: {ids:?}");
    let links = |path: &str, method: &str, status: &str| -> Vec<String> {
        let links = &doc["paths"][path][method]["responses"][status]["links"];
        links
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} {status}: no links"))
            .values()
            .map(|l| l["operationId"].as_str().unwrap().to_owned())
            .collect()
    };
    for status in ["201", "207"] {
        assert_eq!(
            links("/v1/promo-codes", "post", status),
            ["getLivePromoCode", "getPromoCode", "getRequest", "revokePromoCode"]
        );
    }
    assert_eq!(
        links("/v1/sync-jobs", "post", "202"),
        ["cancelSyncJob", "getSyncJob", "listSyncJobResults", "retrySyncJob"]
    );
    for id in links("/v1/sync-jobs", "post", "202") {
        assert!(ids.contains(&id), "a link names `{id}`, which no operation has");
    }
}

/// The served description lists this gateway's campaigns and upstreams where a request names
/// one, and an open route refuses a query string it does not take.
#[tokio::test]
async fn the_served_description_lists_this_gateways_campaigns_and_upstreams() {
    let config = common::upstream("loop", "loop", "http://127.0.0.1:9", "");
    let gw = common::start(&config, &[("spring", "[upstreams.loop]\n")], &[]).await;
    let (status, doc) = gw.get("/openapi.json").await;
    assert_eq!(status, 200);
    let request = &doc["components"]["schemas"]["PromoCodeRequest"]["properties"];
    assert_eq!(request["campaign"]["enum"], serde_json::json!(["spring", null]));
    assert_eq!(request["targets"]["items"]["enum"], serde_json::json!(["loop"]));
    assert_eq!(
        doc["components"]["schemas"]["Mirror"]["properties"]["to"]["items"]["enum"],
        serde_json::json!(["loop"])
    );
    for path in ["/health?verbose=1", "/openapi.json?x=1"] {
        let (status, problem) = gw.get(path).await;
        assert_eq!(status, 400, "{path}: {problem}");
        assert!(problem.to_string().contains("takes none"), "{problem}");
    }
}

/// Every operation with the scope its API key needs (src/gateway_auth.rs); `None`: always open.
const SCOPES: [(&str, &str, Option<&str>); 13] = [
    ("get", "/health", None),
    ("get", "/openapi.json", None),
    ("get", "/metrics", Some("metrics:read")),
    ("post", "/v1/promo-codes", Some("promo-codes:write")),
    ("get", "/v1/promo-codes", Some("promo-codes:read")),
    ("get", "/v1/promo-codes/{code}", Some("promo-codes:read")),
    ("get", "/v1/promo-codes/{code}/live", Some("promo-codes:read")),
    ("get", "/v1/requests/{id}", Some("promo-codes:read")),
    ("post", "/v1/sync-jobs", Some("sync-jobs:write")),
    ("get", "/v1/sync-jobs/{id}", Some("sync-jobs:read")),
    ("get", "/v1/sync-jobs/{id}/results", Some("sync-jobs:read")),
    ("post", "/v1/sync-jobs/{id}/retry", Some("sync-jobs:write")),
    ("post", "/v1/sync-jobs/{id}/cancel", Some("sync-jobs:write")),
];

#[test]
fn metrics_is_described_as_prometheus_text() {
    let doc = generated();
    let op = &doc["paths"]["/metrics"]["get"];
    let content = op["responses"]["200"]["content"].as_object().unwrap();
    assert_eq!(
        content.keys().collect::<Vec<_>>(),
        ["text/plain; version=0.0.4"],
        "{op}"
    );
    assert_eq!(content["text/plain; version=0.0.4"]["schema"]["type"], "string");
    assert_eq!(op["security"], serde_json::json!([{ "api_key": ["metrics:read"] }]));
    let mut statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
    statuses.sort();
    assert_eq!(statuses, ["200", "401", "403"]);
}

#[test]
fn api_keys_are_an_http_bearer_scheme_required_per_operation_with_its_scope() {
    let doc = generated();
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(doc["components"]["securitySchemes"].as_object().unwrap().len(), 1);
    // Required per operation, not globally: /health and /openapi.json are open.
    assert!(doc.get("security").is_none(), "{}", doc["security"]);
    for (method, path, scope) in SCOPES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        let responses = op["responses"].as_object().unwrap();
        match scope {
            None => {
                assert_eq!(op["security"], serde_json::json!([]), "{method} {path}: stated open");
                assert!(
                    !responses.contains_key("401") && !responses.contains_key("403"),
                    "{method} {path}"
                );
            }
            Some(scope) => {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ "api_key": [scope] }]),
                    "{method} {path}"
                );
                assert_eq!(
                    responses["401"]["$ref"], "#/components/responses/Unauthorized",
                    "{method} {path}"
                );
                assert_eq!(
                    responses["403"]["$ref"], "#/components/responses/Forbidden",
                    "{method} {path}"
                );
                let description = op["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains(&format!("`{scope}`")),
                    "{method} {path}: {description}"
                );
            }
        }
    }
    for name in ["Unauthorized", "Forbidden"] {
        let response = &doc["components"]["responses"][name];
        assert_eq!(
            response["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
            "{name}"
        );
        assert_eq!(
            response["headers"]["WWW-Authenticate"]["schema"]["type"], "string",
            "{name}"
        );
    }
}

/// What the description says of keys and scopes is what the gateway does: each protected
/// operation answers 401 without a key and 403 with a key lacking its scope (problem+json, with
/// a `WWW-Authenticate` challenge), the open ones answer without a key, and /metrics answers the
/// documented text format.
#[tokio::test]
async fn gateway_answers_as_the_security_requirements_say() {
    let config = r#"
[[server.api_keys]]
name = "metrics"
key_env = "GW_KEY_METRICS"
scopes = ["metrics:read"]

[[server.api_keys]]
name = "codes"
key_env = "GW_KEY_CODES"
scopes = ["promo-codes:read"]
"#;
    let gw = common::start(
        config,
        &[],
        &[("GW_KEY_METRICS", "metrics-key"), ("GW_KEY_CODES", "codes-key")],
    )
    .await;
    let doc = generated();
    let send = |method: &str, path: &str, key: Option<&str>| {
        let url = format!(
            "{}{}",
            gw.base,
            path.replace("{code}", "SPRING-20").replace("{id}", "1")
        );
        let request = match method {
            "get" => gw.http.get(url),
            "post" => gw.http.post(url).header("Content-Type", "application/json").body("{}"),
            other => panic!("{other}"),
        };
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send()
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(scope) = op["security"][0]["api_key"][0].as_str() else {
                let r = send(method, path, None).await.unwrap();
                assert_eq!(r.status(), 200, "{method} {path} without a key");
                continue;
            };
            // A key of another scope than the operation's.
            let other = if scope == "metrics:read" {
                "codes-key"
            } else {
                "metrics-key"
            };
            for (key, status, challenge) in [
                (None, 401, "Bearer realm=\"promo-gateway\"".to_owned()),
                (
                    Some(other),
                    403,
                    format!("Bearer realm=\"promo-gateway\", error=\"insufficient_scope\", scope=\"{scope}\""),
                ),
            ] {
                let r = send(method, path, key).await.unwrap();
                assert_eq!(r.status(), status, "{method} {path} with {key:?}");
                assert_eq!(r.headers()["www-authenticate"], challenge.as_str(), "{method} {path}");
                assert_eq!(
                    r.headers()["content-type"],
                    "application/problem+json",
                    "{method} {path}"
                );
                assert!(
                    op["responses"][status.to_string()].is_object(),
                    "{method} {path} {status}"
                );
            }
        }
    }
    let r = send("get", "/metrics", Some("metrics-key")).await.unwrap();
    assert_eq!(r.status(), 200);
    let documented = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with(&documented),
        "{content_type} is not {documented}"
    );
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("# TYPE promo_gateway_upstream_calls_total counter"));
}

/// A path segment that is not UTF-8 names nothing: every parameterised route answers the
/// documented 404 problem, not axum's undocumented plain-text 400.
#[tokio::test]
async fn a_segment_that_is_not_utf8_is_a_404_problem() {
    let gw = common::start("", &[], &[]).await;
    for (method, path) in [
        ("GET", "/v1/promo-codes/%FF"),
        ("GET", "/v1/requests/%FF"),
        ("GET", "/v1/sync-jobs/%FF"),
        ("GET", "/v1/sync-jobs/%FF/results"),
        ("POST", "/v1/sync-jobs/%FF/retry"),
        ("POST", "/v1/sync-jobs/%FF/cancel"),
    ] {
        let url = format!("{}{path}", gw.base);
        let request = match method {
            "GET" => gw.http.get(url),
            _ => gw.http.post(url),
        };
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 404, "{method} {path}");
        assert_eq!(
            answer.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "path", "{method} {path}: {body}");
        assert!(
            body["errors"][0]["rule"].as_str().unwrap().contains(path),
            "{method} {path}: {body}"
        );
    }
}

/// The rules JSON Schema can state are in the description, and the gateway enforces each as
/// described: a sync job is one of three shapes (no other member, no null), `targets` and a
/// mirror's `to` are never empty, a customer's or partner's `id` and a `cursor` never empty.
#[tokio::test]
async fn the_description_states_the_rules_the_gateway_enforces() {
    let doc = generated();
    let schemas = &doc["components"]["schemas"];
    let shapes: Vec<&str> = schemas["SyncJobRequest"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["$ref"].as_str().unwrap().trim_start_matches("#/components/schemas/"))
        .collect();
    assert_eq!(shapes, ["CodesJob", "GenerateJob", "MirrorJob", "RevokeJob"]);
    for shape in &shapes {
        assert_eq!(schemas[shape]["additionalProperties"], false, "{shape}");
        for (name, member) in schemas[shape]["properties"].as_object().unwrap() {
            assert!(
                !member.to_string().contains("\"null\""),
                "{shape}.{name} is nullable: {member}"
            );
        }
    }
    assert_eq!(
        schemas["CodesJob"]["required"],
        serde_json::json!(["campaign", "codes"])
    );
    assert_eq!(schemas["CodesJob"]["properties"]["codes"]["minItems"], 1);
    assert_eq!(schemas["GenerateJob"]["properties"]["targets"]["minItems"], 1);
    assert_eq!(schemas["Mirror"]["properties"]["to"]["minItems"], 1);
    assert_eq!(schemas["Generate"]["properties"]["count"]["maximum"], 1_000_000);
    assert_eq!(schemas["PromoCodeRequest"]["properties"]["targets"]["minItems"], 1);
    for (schema, property) in [
        ("PromoCodeRequest", "targets"),
        ("CodesJob", "targets"),
        ("GenerateJob", "targets"),
        ("Mirror", "to"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][property]["uniqueItems"], true,
            "{schema}.{property}"
        );
    }
    assert_eq!(schemas["Party"]["properties"]["id"]["minLength"], 1);
    for path in ["/v1/promo-codes", "/v1/sync-jobs/{id}/results"] {
        let cursor = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cursor")
            .unwrap();
        assert_eq!(cursor["schema"]["minLength"], 1, "{path}");
    }

    // Each request breaking one of those rules is refused (4xx) and nothing is kept.
    let gw = common::start(
        &common::upstream("loop", "loop", "http://127.0.0.1:9", ""),
        &[("spring", "[upstreams.loop]\n")],
        &[("LOOP_TOKEN", "t")],
    )
    .await;
    let code = |extra: Value| {
        common::merged(
            serde_json::json!({ "code": "RULE-1", "discount": { "percent_off": 20 }, "targets": ["loop"] }),
            extra,
        )
    };
    for body in [
        code(serde_json::json!({ "targets": [] })),
        code(serde_json::json!({ "targets": ["loop", "loop"] })),
        code(serde_json::json!({ "customer": { "id": "" } })),
        code(serde_json::json!({ "partner": { "id": "" } })),
    ] {
        let (status, answer) = gw.create(&body).await;
        assert!((400..500).contains(&status), "{body} -> {status} {answer}");
    }
    for body in [
        serde_json::json!({ "campaign": "spring", "codes": ["A"], "generate": { "count": 1, "pattern": "A{random:8}" } }),
        serde_json::json!({ "campaign": "spring", "codes": [] }),
        serde_json::json!({ "campaign": "spring", "targets": [], "codes": ["A"] }),
        serde_json::json!({ "campaign": "spring", "template": null, "codes": ["A"] }),
        serde_json::json!({ "campaign": "spring", "generate": { "count": 1_000_001, "pattern": "A{random:8}" } }),
        serde_json::json!({ "mirror": { "campaign": "spring", "to": [] } }),
        serde_json::json!({ "mirror": { "campaign": "spring", "to": ["loop", "loop"] } }),
        serde_json::json!({ "campaign": "spring", "targets": ["loop", "loop"], "codes": ["A"] }),
        serde_json::json!({ "mirror": { "campaign": "spring", "to": ["loop"] }, "on_unsupported": null }),
        serde_json::json!({ "mirror": { "campaign": "spring", "to": ["loop"] }, "campaign": "spring" }),
        serde_json::json!({ "revoke": { "campaign": "spring", "codes": null } }),
        serde_json::json!({ "revoke": { "campaign": "spring", "targets": [] } }),
        serde_json::json!({ "revoke": { "campaign": "spring", "targets": ["loop", "loop"] } }),
        serde_json::json!({ "revoke": { "campaign": "spring", "delete": null } }),
        serde_json::json!({ "revoke": { "campaign": "spring" }, "on_unsupported": "refuse" }),
    ] {
        let (status, answer) = gw.post("/v1/sync-jobs", body.to_string()).await;
        assert!((400..500).contains(&status), "{body} -> {status} {answer}");
    }
    for path in ["/v1/promo-codes?cursor=", "/v1/sync-jobs/1/results?cursor="] {
        let raw = gw.get_raw(path).await;
        assert!(
            (400..500).contains(&raw.status),
            "{path} -> {} {}",
            raw.status,
            raw.text
        );
    }
    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], serde_json::json!([]), "{page}");
}
