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

/// Seconds since the Unix epoch of an RFC 3339 date-time (`2026-11-25T16:00:00Z`, with an
/// optional fraction and a `Z` or `±hh:mm` offset); `None` when malformed or before 1970.
pub fn rfc3339_seconds(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b.get(i) != Some(&c)) || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = b.get(19..)?;
    if rest.first() == Some(&b'.') {
        let fraction = rest.iter().skip(1).take_while(|c| c.is_ascii_digit()).count();
        if fraction == 0 {
            return None;
        }
        rest = rest.get(1 + fraction..)?;
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let value = |a: &u8, b: &u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let minutes = value(h1, h2)? * 60 + value(m1, m2)?;
            if *sign == b'+' { minutes * 60 } else { -minutes * 60 }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second - offset).ok()
}

/// The RFC 3339 UTC date-time (`2026-11-25T16:00:00Z`) of seconds since the Unix epoch.
pub fn rfc3339(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let rest = seconds % 86_400;
    // Civil date from days (proleptic Gregorian), the inverse of the algorithm above.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod rfc3339_tests {
    use super::{rfc3339, rfc3339_seconds};

    #[test]
    fn formats_what_it_reads() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0u64, 59, 86_399, 951_868_799, 1_790_000_000, 4_102_444_800, 253_402_300_799] {
            assert_eq!(rfc3339_seconds(&rfc3339(t)), Some(t), "{t}");
        }
    }

    #[test]
    fn reads_rfc3339_date_times() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_seconds("2026-11-25T16:00:00Z"), Some(1_795_622_400));
        assert_eq!(rfc3339_seconds("2026-11-25T17:00:00.123+01:00"), Some(1_795_622_400));
        assert_eq!(rfc3339_seconds("2000-02-29T12:00:00Z"), Some(951_825_600));
        for bad in ["2026-11-25", "2026-13-01T00:00:00Z", "2026-11-25T16:00:00", "1969-12-31T23:59:59Z", "x"] {
            assert_eq!(rfc3339_seconds(bad), None, "{bad}");
        }
    }
}
