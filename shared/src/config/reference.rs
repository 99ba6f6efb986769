//! The configuration reference of the book (`docs/src/configuration.md`) checked against the
//! code, so that the two cannot drift: every setting of [`Settings`] has a row there with its
//! default, and every row names a setting that exists.
//!
//! A row is `` | `section.key` | default | meaning | ``; the default is a TOML value in
//! backticks (durations as humantime strings, compared as durations), or `—` for a setting
//! that is unset by default. A row of three parts (`accepter.tls.cert`) documents a field
//! nested in a setting that exists.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::Settings;

/// `docs/src/configuration.md`'s rows: key → default cell.
fn documented() -> BTreeMap<String, String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/configuration.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect();
        let [key, default, ..] = cells.as_slice() else {
            continue;
        };
        let Some(key) = key.strip_prefix('`').and_then(|key| key.strip_suffix('`')) else {
            continue;
        };
        if !key.contains('.') || key.contains(' ') {
            continue;
        }
        let previous = rows.insert(key.to_owned(), (*default).to_owned());
        assert!(previous.is_none(), "{key} has two rows in the reference");
    }
    rows
}

/// Every `section.key` of the settings with its default, as JSON.
fn settings() -> BTreeMap<String, Value> {
    let Value::Object(sections) =
        serde_json::to_value(Settings::default()).expect("settings as JSON")
    else {
        panic!("the settings are not a JSON object");
    };
    let mut keys = BTreeMap::new();
    for (section, value) in sections {
        let Value::Object(fields) = value else {
            panic!("{section} is not a section");
        };
        for (key, default) in fields {
            keys.insert(format!("{section}.{key}"), default);
        }
    }
    keys
}

/// A humantime duration (`"10s"`, `"1day"`, `"24h"`), when the value is one.
fn duration(value: &Value) -> Option<Duration> {
    value
        .as_str()
        .and_then(|text| humantime::parse_duration(text).ok())
}

/// Whether the reference's `documented` value is the code's `default`: equal JSON, with
/// durations compared as durations (`"24h"` is `"1day"`).
fn same(documented: &Value, default: &Value) -> bool {
    match (documented, default) {
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| same(l, r))
        }
        _ => match (duration(documented), duration(default)) {
            (Some(left), Some(right)) => left == right,
            _ => documented == default,
        },
    }
}

/// The reference's default cell as JSON: `—` is unset (`null`), anything else a TOML value in
/// backticks.
fn parse_cell(key: &str, cell: &str) -> Result<Value, String> {
    if cell == "—" {
        return Ok(Value::Null);
    }
    let inner = cell
        .strip_prefix('`')
        .and_then(|cell| cell.strip_suffix('`'))
        .ok_or_else(|| format!("{key}: the default {cell:?} is neither `a TOML value` nor —"))?;
    let table: toml::Table = toml::from_str(&format!("value = {inner}"))
        .map_err(|error| format!("{key}: the default {inner} is not a TOML value: {error}"))?;
    serde_json::to_value(&table["value"]).map_err(|error| format!("{key}: {error}"))
}

#[test]
fn the_configuration_reference_lists_every_setting_with_its_default() {
    let documented = documented();
    let settings = settings();
    let mut problems = Vec::new();
    for (key, default) in &settings {
        let Some(cell) = documented.get(key) else {
            problems.push(format!(
                "{key} (default {default}) has no row in docs/src/configuration.md"
            ));
            continue;
        };
        match parse_cell(key, cell) {
            Ok(value) if same(&value, default) => {}
            Ok(value) => problems.push(format!(
                "{key}: the reference says {value}, the code's default is {default}"
            )),
            Err(problem) => problems.push(problem),
        }
    }
    for key in documented.keys() {
        let parts: Vec<&str> = key.split('.').collect();
        let setting = parts.iter().take(2).copied().collect::<Vec<_>>().join(".");
        if parts.len() < 2 || !settings.contains_key(&setting) {
            problems.push(format!(
                "docs/src/configuration.md documents {key}, which is not a setting"
            ));
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

#[test]
fn the_check_sees_a_wrong_default_and_an_unknown_key() {
    let default = Value::from("1day");
    assert!(same(
        &parse_cell("k", "`\"24h\"`").expect("a duration"),
        &default
    ));
    assert!(!same(
        &parse_cell("k", "`\"25h\"`").expect("a duration"),
        &default
    ));
    assert!(parse_cell("k", "24h").is_err());
    assert_eq!(parse_cell("k", "—").expect("unset"), Value::Null);
    assert!(same(
        &parse_cell("k", "`[\"1s\", \"1m\"]`").expect("a list"),
        &serde_json::json!(["1s", "60s"])
    ));
    assert!(!settings().contains_key("amqp.no_such_key"));
}
