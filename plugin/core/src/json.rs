//! Strict JSON for security-relevant documents.
//!
//! JOSE headers, JWT claims and disclosures are parsed with duplicate member names refused
//! at every depth (RFC 7515 §5.2 allows refusing them, and accepting them invites two
//! parsers to disagree about what was signed), with a bound on nesting depth.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Deepest nesting accepted in a token's JSON.
pub const MAX_DEPTH: usize = 32;

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or JSON with a duplicate member or too deep.
    #[error("{0}")]
    Invalid(String),
    /// JSON, but not an object where one was required.
    #[error("not a JSON object")]
    NotAnObject,
}

struct Strict(Value);

struct StrictVisitor {
    depth: usize,
}

impl<'de> de::DeserializeSeed<'de> for StrictVisitor {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!("nesting deeper than {MAX_DEPTH}")));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictVisitor { depth: self.depth + 1 })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictVisitor { depth: self.depth + 1 })?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate member `{key}`")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(StrictVisitor { depth: 0 }, deserializer).map(Strict)
    }
}

/// Parses any JSON value strictly.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // serde_json's own recursion limit (128) is above ours; ours fires first.
    let Strict(value) =
        de::Deserialize::deserialize(&mut deserializer).map_err(|e| JsonError::Invalid(e.to_string()))?;
    deserializer.end().map_err(|e| JsonError::Invalid(e.to_string()))?;
    Ok(value)
}

/// Parses a JSON object strictly.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse(br#"{"a":[1,2.5,"x",null,true,{"b":{}}]}"#).unwrap();
        assert_eq!(v["a"][1], 2.5);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        let err = parse(br#"{"alg":"ES256","alg":"none"}"#).unwrap_err();
        assert_eq!(err.to_string().split(" at ").next(), Some("duplicate member `alg`"));
        assert!(parse(br#"{"a":[{"x":1,"x":2}]}"#).is_err());
    }

    #[test]
    fn refuses_deep_nesting_trailing_data_and_non_objects() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert!(parse(deep.as_bytes()).unwrap_err().to_string().contains("nesting deeper"));
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(fine.as_bytes()).is_ok());
        assert!(parse(b"{} {}").is_err());
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotAnObject));
    }
}
