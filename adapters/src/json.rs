//! JSON request bodies read strictly: an object that holds the same key twice is refused.
//!
//! JSON leaves duplicate keys undefined (RFC 8259 §4: names "SHOULD be unique"), and parsers
//! disagree: serde_json, like most, keeps the last one, others keep the first or refuse. So
//! `{"code": "A", "code": "B"}` would create `B` here while a proxy, a log reader or the
//! client's own tooling saw `A`; and a misspelt duplicate would be silently dropped, which is
//! what "unknown fields are refused" promises never happens. Every JSON body the API reads
//! goes through [`parse`], at any depth.

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::Value;

/// Why a JSON text was not taken.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (or not one JSON value).
    #[error("{0}")]
    Syntax(#[from] serde_json::Error),
    /// An object holds `path`'s last key more than once.
    #[error("{path}: {}", DUPLICATE_RULE)]
    DuplicateKey {
        /// Where the repeated key is, as a problem names a field: `discount.amount_off`,
        /// `codes[2].code`.
        path: String,
    },
}

/// The rule a duplicate key breaks, as a problem states it.
pub const DUPLICATE_RULE: &str =
    "is given more than once in its object; each key may appear once (a later value must not silently replace an earlier one)";

/// Parses a JSON text into a value, refusing any object (at any depth) that repeats a key.
pub fn parse(text: &[u8]) -> Result<Value, JsonError> {
    let value: Value = serde_json::from_slice(text)?;
    // A second, allocation-light pass finds repeated keys, which the `Value` above has already
    // merged away. Keeping serde_json's own `Value` parse means numbers and strings are read
    // exactly as everywhere else.
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(text);
    match (Node {
        path: String::new(),
        found: &mut found,
    })
    .deserialize(&mut de)
    {
        Ok(()) => Ok(value),
        Err(e) => match found {
            Some(path) => Err(JsonError::DuplicateKey { path }),
            None => Err(JsonError::Syntax(e)),
        },
    }
}

/// One value at `path`; on a repeated key it records the key's path in `found` and fails.
struct Node<'a> {
    path: String,
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let child = Node {
                path: format!("{}[{i}]", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                *self.found = Some(path);
                return Err(serde::de::Error::custom(DUPLICATE_RULE));
            }
            map.next_value_seed(Node {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(text: &str) -> Option<String> {
        match parse(text.as_bytes()) {
            Err(JsonError::DuplicateKey { path }) => Some(path),
            Ok(_) => None,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path_at_any_depth() {
        assert_eq!(dup(r#"{"code":"A","x":1,"code":"B"}"#).as_deref(), Some("code"));
        assert_eq!(
            dup(r#"{"discount":{"amount_off":1,"amount_off":2}}"#).as_deref(),
            Some("discount.amount_off")
        );
        assert_eq!(
            dup(r#"{"codes":["A",{"code":"B"},{"code":"C","code":"D"}]}"#).as_deref(),
            Some("codes[2].code")
        );
        // The same key in two objects, or as a value, is no repetition.
        assert_eq!(dup(r#"{"a":{"k":1},"b":{"k":1},"k":"k"}"#), None);
        assert_eq!(dup(r#"[1, 2.5, -3, "s", null, true, {"a": []}]"#), None);
    }

    #[test]
    fn keys_are_compared_after_escapes_are_read() {
        assert_eq!(dup(r#"{"code":"A","\u0063ode":"B"}"#).as_deref(), Some("code"));
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        assert!(matches!(parse(b"{\"code\":"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse(b""), Err(JsonError::Syntax(_))));
    }
}
