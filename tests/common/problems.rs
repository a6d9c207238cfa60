//! Readers of problem+json answers (RFC 9457): the gateway's refusals name each field and rule in
//! `errors`, and their `type` is `urn:promo-gateway:problem:<slug>`.

use serde_json::Value;

/// The (field, rule) pairs of a problem+json answer, in order.
pub fn problems(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {body}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Fails unless `body` (served as `content_type`) is a problem of type `slug` whose `status`
/// member is `status` and whose first error names `field`. `what` prefixes the failures.
pub fn assert_problem(what: &str, body: &Value, content_type: &str, status: u16, slug: &str, field: &str) {
    assert_eq!(content_type, "application/problem+json", "{what}: {body}");
    assert_eq!(
        body["type"],
        format!("urn:promo-gateway:problem:{slug}"),
        "{what}: {body}"
    );
    assert_eq!(body["status"], status, "{what}: {body}");
    assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
}
