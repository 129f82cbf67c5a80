//! Spec documents as text.
//!
//! serde_json and serde_norway both resolve a repeated key silently (the last
//! one wins), which would let `{"name": "a", "name": "b"}` through a strict
//! spec. Documents are therefore read into a `serde_json::Value` by a visitor
//! that rejects repeated keys.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::SpecError;

pub(super) fn parse_json(text: &str) -> Result<Value, SpecError> {
    let mut de = serde_json::Deserializer::from_str(text);
    Document::deserialize(&mut de)
        .and_then(|doc| de.end().map(|()| doc.0))
        .map_err(|e| SpecError::new("", format!("invalid JSON: {e}")))
}

pub(super) fn parse_yaml(text: &str) -> Result<Value, SpecError> {
    serde_norway::from_str(text)
        .map(|doc: Document| doc.0)
        .map_err(|e| SpecError::new("", format!("invalid YAML: {e}")))
}

/// A JSON value in which no object repeats a key.
struct Document(Value);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor).map(Document)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format_args!("{v} is not a finite number")))
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

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Document(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Document(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_json_and_yaml_alike() {
        let expected = json!({"a": [1, -2, 2.5, "x", true, null], "b": {"c": "d"}});
        let json = parse_json(r#"{"a": [1, -2, 2.5, "x", true, null], "b": {"c": "d"}}"#);
        assert_eq!(json.unwrap(), expected);
        let yaml = parse_yaml("a: [1, -2, 2.5, x, true, null]\nb:\n  c: d\n");
        assert_eq!(yaml.unwrap(), expected);
    }

    #[test]
    fn rejects_repeated_keys() {
        assert_eq!(
            parse_json(r#"{"name": "a", "x": {"k": 1, "k": 2}}"#)
                .unwrap_err()
                .to_string(),
            r#"invalid JSON: duplicate key "k" at line 1 column 31"#
        );
        assert_eq!(
            parse_yaml("name: a\nx:\n  k: 1\n  k: 2\n")
                .unwrap_err()
                .to_string(),
            r#"invalid YAML: x: duplicate key "k" at line 3 column 3"#
        );
    }

    #[test]
    fn rejects_trailing_text_and_bad_syntax() {
        assert_eq!(
            parse_json(r#"{"name": "a"} x"#).unwrap_err().to_string(),
            "invalid JSON: trailing characters at line 1 column 15"
        );
        assert_eq!(
            parse_json(r#"{"name": "#).unwrap_err().to_string(),
            "invalid JSON: EOF while parsing a value at line 1 column 9"
        );
        assert!(parse_yaml("a: [1")
            .unwrap_err()
            .message
            .starts_with("invalid YAML: "));
    }
}
