//! The documents' body rules: one JSON Schema per operation (`schemas/`, written by hand from
//! the vendor documents), compiled once, with format validation on.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::Violation;

/// Every schema, by file name.
const SCHEMAS: &[(&str, &str)] = &[
    (
        "spacebring-create-promocode",
        include_str!("../schemas/spacebring-create-promocode.json"),
    ),
    (
        "partnero-create-promotion-code",
        include_str!("../schemas/partnero-create-promotion-code.json"),
    ),
    (
        "moltin-create-promotion-codes",
        include_str!("../schemas/moltin-create-promotion-codes.json"),
    ),
    (
        "limio-create-promo-code-v2",
        include_str!("../schemas/limio-create-promo-code-v2.json"),
    ),
    (
        "limio-create-promo-code-v3",
        include_str!("../schemas/limio-create-promo-code-v3.json"),
    ),
    ("loop-create-promo", include_str!("../schemas/loop-create-promo.json")),
    (
        "spacebring-archive-promocode",
        include_str!("../schemas/spacebring-archive-promocode.json"),
    ),
    (
        "partnero-delete-promotion-code",
        include_str!("../schemas/partnero-delete-promotion-code.json"),
    ),
    (
        "moltin-delete-promotion-codes",
        include_str!("../schemas/moltin-delete-promotion-codes.json"),
    ),
    (
        "limio-update-promo-code-v2",
        include_str!("../schemas/limio-update-promo-code-v2.json"),
    ),
];

fn validators() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|(name, text)| {
                let schema: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("schemas/{name}.json: {e}"));
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("schemas/{name}.json: {e}"));
                (*name, validator)
            })
            .collect()
    })
}

/// Every rule of schema `name` that `body` breaks, each with the JSON pointer of the value at
/// fault and the keyword it broke.
pub(crate) fn violations(name: &str, body: &Value) -> Vec<Violation> {
    let validator = validators().get(name).unwrap_or_else(|| panic!("no schema {name}"));
    validator
        .iter_errors(body)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            if matches!(e.kind(), jsonschema::error::ValidationErrorKind::FalseSchema) {
                // A property a conditional rules out (Limio's currency on a percentage discount).
                let message = format!("{pointer} is not allowed here: the document gives it only in another case");
                return Violation::new(pointer, "falseSchema", message);
            }
            let schema_path = e.schema_path().to_string();
            let rule = schema_path.rsplit('/').next().unwrap_or_default().to_owned();
            Violation::new(pointer, rule, e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_compiles() {
        assert_eq!(super::validators().len(), super::SCHEMAS.len());
    }
}
