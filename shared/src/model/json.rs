//! Request bodies decoded so that a wrong shape names its field: the accepter's API and the
//! deliverer's user routes answer the same problem for the same mistake.

use serde::de::DeserializeOwned;

/// Why a body did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (a 400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON of the wrong shape (a 422): the JSON Pointer of the field at fault, and why.
    #[error("{field}: {detail}")]
    Invalid {
        /// Where, as a JSON Pointer (`/to/users/3`; `/` for the whole body).
        field: String,
        /// What is wrong, without serde's line and column.
        detail: String,
    },
}

/// Decodes a body that must be a JSON object. serde would read a struct from an array of its
/// fields in order (`[null]` as `{"ttl": null}`), so an array is refused first.
pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, JsonError> {
    if raw.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(JsonError::Invalid {
            field: "/".into(),
            detail: "must be a JSON object, not an array".into(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    match result {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|error| JsonError::Malformed(error.to_string()))?;
            Ok(value)
        }
        Err(error) => {
            let field = pointer(error.path());
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                Err(JsonError::Malformed(inner.to_string()))
            } else {
                Err(JsonError::Invalid {
                    field,
                    detail: strip_position(&inner.to_string()),
                })
            }
        }
    }
}

/// serde's path (`to.users[3]`) as a JSON Pointer (`/to/users/3`).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                pointer.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1")));
            }
            Segment::Enum { variant } => pointer.push_str(&format!("/{variant}")),
            Segment::Unknown => {}
        }
    }
    if pointer.is_empty() {
        "/".into()
    } else {
        pointer
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        channels: BTreeMap<String, bool>,
    }

    #[test]
    fn a_wrong_shape_names_its_field_and_bad_syntax_is_malformed() {
        let error = decode::<Body>(br#"{"channels": {"sms": "no"}}"#).expect_err("a string");
        assert!(
            matches!(&error, JsonError::Invalid { field, .. } if field == "/channels/sms"),
            "{error:?}"
        );
        assert!(matches!(
            decode::<Body>(b"{\"channels\": "),
            Err(JsonError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Body>(b"[{}]"),
            Err(JsonError::Invalid { field, .. }) if field == "/"
        ));
        assert!(decode::<Body>(br#"{"channels": {}}"#).is_ok());
    }
}
