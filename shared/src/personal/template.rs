//! Templates: per-locale texts for a message's content and per-channel fields, rendered with
//! minijinja in strict mode (a variable the data does not have is an error, never an empty
//! string). A template is checked and compiled when stored, its data checked when a message is
//! accepted, and rendered by the dispatchers and the deliverer once per locale (once per user
//! when it reads `user.*`).

use std::collections::{BTreeMap, HashSet};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::model::{Channel, TemplateSource};

/// The largest stored template, in bytes of JSON: it travels inside every job of a message.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// What is wrong with a template or with the data given to it: the JSON Pointer of the field
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {detail}")]
pub struct TemplateError {
    /// The field, from the root of the request body (`/locales/fr/sms/text`, `/data/order/id`).
    pub pointer: String,
    /// What is wrong.
    pub detail: String,
}

impl TemplateError {
    fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        TemplateError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// A BCP 47 language tag in its canonical form (`fr-ca` → `fr-CA`), or why it is not one.
pub fn canonical_locale(tag: &str) -> Result<String, String> {
    icu_locale_core::LanguageIdentifier::try_from_str(tag)
        .map(|locale| locale.to_string())
        .map_err(|error| {
            format!("{tag:?} is not a BCP 47 language tag such as en or fr-CA ({error:?})")
        })
}

/// A JSON Pointer segment, escaped (RFC 6901).
fn segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A template compiled: every string field of every locale, ready to render.
#[derive(Debug)]
pub struct Compiled {
    environment: Environment<'static>,
    source: TemplateSource,
    /// Whether any field reads `user` (then it renders per recipient).
    uses_user: bool,
}

/// The rendered texts of one locale for one channel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    /// The locale used.
    pub locale: String,
    /// The content's title.
    pub title: Option<String>,
    /// The content's body.
    pub body: Option<String>,
    /// The channel's fields, in place of its `overrides`.
    pub overrides: Option<Value>,
}

/// The template name of one string field: its pointer under `/locales`.
fn field_name(locale: &str, path: &str) -> String {
    format!("/locales/{}{path}", segment(locale))
}

/// Every string leaf of `value` with its pointer below `path`.
fn string_leaves<'v>(value: &'v Value, path: String, leaves: &mut Vec<(String, &'v str)>) {
    match value {
        Value::String(text) => leaves.push((path, text)),
        Value::Object(map) => {
            for (key, child) in map {
                string_leaves(child, format!("{path}/{}", segment(key)), leaves);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                string_leaves(child, format!("{path}/{index}"), leaves);
            }
        }
        _ => {}
    }
}

/// Line and column of a byte offset of `text`, from 1.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

fn syntax_error(pointer: &str, text: &str, error: &minijinja::Error) -> TemplateError {
    let what = error.detail().unwrap_or("syntax error");
    let (line, column) = match error.range() {
        Some(range) => line_column(text, range.start),
        None => (error.line().unwrap_or(1), 1),
    };
    TemplateError::new(
        pointer,
        format!("template syntax error at line {line}, column {column}: {what}"),
    )
}

impl Compiled {
    /// Checks `source` (locale tags, fields, the schema) and compiles every field. The source
    /// kept has its locale tags in canonical form.
    pub fn new(source: &TemplateSource) -> Result<Compiled, TemplateError> {
        let default_locale = canonical_locale(&source.default_locale)
            .map_err(|detail| TemplateError::new("/default_locale", detail))?;
        if source.locales.is_empty() {
            return Err(TemplateError::new("/locales", "give at least one locale"));
        }
        let mut locales = BTreeMap::new();
        for (tag, variant) in &source.locales {
            let pointer = format!("/locales/{}", segment(tag));
            let canonical =
                canonical_locale(tag).map_err(|detail| TemplateError::new(&pointer, detail))?;
            for (key, value) in variant {
                let field = format!("{pointer}/{}", segment(key));
                match key.as_str() {
                    "title" | "body" if value.is_string() => {}
                    "title" | "body" => return Err(TemplateError::new(field, "must be a string")),
                    channel => {
                        channel.parse::<Channel>().map_err(|_| {
                            TemplateError::new(
                                &field,
                                "a locale holds title, body and per-channel objects (sms, email, apns, fcm, webpush, http, ws)",
                            )
                        })?;
                        if !value.is_object() {
                            return Err(TemplateError::new(field, "must be an object"));
                        }
                    }
                }
            }
            if locales.insert(canonical.clone(), variant.clone()).is_some() {
                return Err(TemplateError::new(
                    pointer,
                    format!("locale {canonical} is given twice"),
                ));
            }
        }
        if !locales.contains_key(&default_locale) {
            return Err(TemplateError::new(
                "/default_locale",
                format!("{default_locale} is not one of the template's locales"),
            ));
        }
        if let Some(schema) = &source.schema {
            jsonschema::validator_for(schema).map_err(|error| {
                TemplateError::new("/schema", format!("not a valid JSON Schema: {error}"))
            })?;
        }
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        // Texts go to phones, mail clients and apps, not into HTML pages of Sprayer's own:
        // nothing is escaped, an HTML e-mail body escapes with the `e` filter where it wants.
        environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut uses_user = false;
        for (locale, variant) in &locales {
            let mut leaves = Vec::new();
            for (key, value) in variant {
                string_leaves(value, format!("/{}", segment(key)), &mut leaves);
            }
            for (path, text) in leaves {
                let name = field_name(locale, &path);
                environment
                    .add_template_owned(name.clone(), text.to_owned())
                    .map_err(|error| syntax_error(&name, text, &error))?;
                let template = environment
                    .get_template(&name)
                    .map_err(|error| syntax_error(&name, text, &error))?;
                uses_user |= template.undeclared_variables(false).contains("user");
            }
        }
        Ok(Compiled {
            environment,
            source: TemplateSource {
                default_locale,
                schema: source.schema.clone(),
                locales,
            },
            uses_user,
        })
    }

    /// The checked source, locale tags canonical.
    pub fn source(&self) -> &TemplateSource {
        &self.source
    }

    /// Whether a field reads `user.*`, so that it renders once per recipient.
    pub fn uses_user(&self) -> bool {
        self.uses_user
    }

    /// The template's locale for the first of `wanted` it has, each tried whole and then
    /// without its last subtags (`fr-CA` → `fr`); else the default locale.
    pub fn pick_locale<'s>(&'s self, wanted: &[Option<&str>]) -> &'s str {
        for tag in wanted.iter().flatten() {
            let mut candidate: &str = tag;
            loop {
                if let Some((locale, _)) = self.source.locales.get_key_value(candidate) {
                    return locale;
                }
                match candidate.rfind('-') {
                    Some(cut) => candidate = &candidate[..cut],
                    None => break,
                }
            }
        }
        &self.source.default_locale
    }

    /// Renders `locale`'s title, body and `channel` fields with `data` and, when the template
    /// reads it, `user`.
    pub fn render(
        &self,
        locale: &str,
        channel: Channel,
        data: &Map<String, Value>,
        user: Option<&Value>,
    ) -> Result<Rendered, TemplateError> {
        let Some(variant) = self.source.locales.get(locale) else {
            return Err(TemplateError::new(
                "/locale",
                format!("the template has no locale {locale}"),
            ));
        };
        let mut context = data.clone();
        if let Some(user) = user {
            context.insert("user".into(), user.clone());
        }
        let context = minijinja::Value::from(minijinja::value::Serde(&context));
        let render_text = |path: &str| -> Result<String, TemplateError> {
            let name = field_name(locale, path);
            let template = self
                .environment
                .get_template(&name)
                .map_err(|error| TemplateError::new(&name, error.to_string()))?;
            template.render(&context).map_err(|error| {
                let line = error
                    .line()
                    .map(|line| format!(" (line {line})"))
                    .unwrap_or_default();
                let detail = error
                    .detail()
                    .map_or_else(|| error.kind().to_string(), str::to_owned);
                TemplateError::new(&name, format!("{detail}{line}"))
            })
        };
        let text = |key: &str| -> Result<Option<String>, TemplateError> {
            match variant.get(key) {
                Some(Value::String(_)) => render_text(&format!("/{key}")).map(Some),
                _ => Ok(None),
            }
        };
        let overrides = match variant.get(channel.as_str()) {
            Some(fields) => {
                Some(self.render_value(fields, &format!("/{channel}"), &render_text)?)
            }
            None => None,
        };
        Ok(Rendered {
            locale: locale.to_owned(),
            title: text("title")?,
            body: text("body")?,
            overrides,
        })
    }

    fn render_value(
        &self,
        value: &Value,
        path: &str,
        render_text: &impl Fn(&str) -> Result<String, TemplateError>,
    ) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(_) => Value::String(render_text(path)?),
            Value::Object(map) => {
                let mut rendered = Map::with_capacity(map.len());
                for (key, child) in map {
                    let child_path = format!("{path}/{}", segment(key));
                    rendered.insert(
                        key.clone(),
                        self.render_value(child, &child_path, render_text)?,
                    );
                }
                Value::Object(rendered)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, child)| {
                        self.render_value(child, &format!("{path}/{index}"), render_text)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Checks a message's `data` before it is accepted: the schema, then every field of every
    /// locale for `channels` rendered. Paths the template reads that the data lacks are named
    /// as `/data/...`; `user.*` is not known yet and renders as empty text here.
    pub fn check_data(
        &self,
        data: &Map<String, Value>,
        channels: &[Channel],
    ) -> Result<(), TemplateError> {
        if data.contains_key("user") {
            return Err(TemplateError::new(
                "/data/user",
                "`user` is the recipient's profile in a template; give the data another name",
            ));
        }
        if let Some(schema) = &self.source.schema {
            let validator = jsonschema::validator_for(schema)
                .map_err(|error| TemplateError::new("/schema", error.to_string()))?;
            let instance = Value::Object(data.clone());
            if let Some(error) = validator.iter_errors(&instance).next() {
                return Err(TemplateError::new(
                    format!("/data{}", error.instance_path().as_str()),
                    format!("does not match the template's schema: {error}"),
                ));
            }
        }
        let globals: HashSet<&str> = self.environment.globals().map(|(name, _)| name).collect();
        let mut user_paths = Vec::new();
        let wanted = |name: &str| {
            let field = name.splitn(4, '/').nth(3).unwrap_or_default();
            let head = field.split('/').next().unwrap_or_default();
            head == "title"
                || head == "body"
                || channels.iter().any(|channel| channel.as_str() == head)
        };
        for (name, template) in self.environment.templates() {
            if !wanted(name) {
                continue;
            }
            for path in template.undeclared_variables(true) {
                let mut parts = path.split('.');
                let root = parts.next().unwrap_or_default();
                if root == "user" {
                    user_paths.push(path.clone());
                    continue;
                }
                if globals.contains(root) {
                    continue;
                }
                let mut at = data.get(root);
                let mut pointer = format!("/data/{}", segment(root));
                if at.is_none() {
                    return Err(TemplateError::new(
                        pointer,
                        format!("the template reads {path} ({name}), which the data does not have"),
                    ));
                }
                for part in parts {
                    let Some(Value::Object(map)) = at else { break };
                    pointer.push('/');
                    pointer.push_str(&segment(part));
                    at = map.get(part);
                    if at.is_none() {
                        return Err(TemplateError::new(
                            pointer,
                            format!(
                                "the template reads {path} ({name}), which the data does not have"
                            ),
                        ));
                    }
                }
            }
        }
        let user = placeholder_user(&user_paths);
        for locale in self.source.locales.keys() {
            for channel in channels {
                self.render(locale, *channel, data, Some(&user))
                    .map_err(|error| TemplateError::new("/data", error.to_string()))?;
            }
        }
        Ok(())
    }
}

/// A `user` with every path the template reads present and empty, for checks made before the
/// recipients are known.
fn placeholder_user(paths: &[String]) -> Value {
    let mut user = Value::Object(Map::new());
    for path in paths {
        let mut at = &mut user;
        let mut parts = path.split('.').skip(1).peekable();
        while let Some(part) = parts.next() {
            let Value::Object(map) = at else { break };
            let last = parts.peek().is_none();
            at = map.entry(part.to_owned()).or_insert_with(|| {
                if last {
                    Value::String(String::new())
                } else {
                    Value::Object(Map::new())
                }
            });
        }
    }
    user
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(value: Value) -> TemplateSource {
        serde_json::from_value(value).expect("a template source")
    }

    fn shipped() -> Compiled {
        Compiled::new(&source(json!({
            "default_locale": "en",
            "locales": {
                "en": {"title": "Order {{ order.id }} shipped", "sms": {"text": "Order {{ order.id }} shipped"}},
                "fr": {"title": "Commande {{ order.id }} expédiée", "sms": {"text": "Commande {{ order.id }} expédiée"}}
            }
        })))
        .expect("compiles")
    }

    #[test]
    fn locales_fall_back_from_region_to_language_to_the_default() {
        let template = shipped();
        assert_eq!(template.pick_locale(&[Some("fr-CA")]), "fr");
        assert_eq!(template.pick_locale(&[None, Some("fr")]), "fr");
        assert_eq!(template.pick_locale(&[Some("de-AT"), Some("en-GB")]), "en");
        assert_eq!(template.pick_locale(&[Some("de")]), "en");
        let data = json!({"order": {"id": "A1"}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let rendered = template
            .render("fr", Channel::Sms, &data, None)
            .expect("renders");
        assert_eq!(rendered.title.as_deref(), Some("Commande A1 expédiée"));
        assert_eq!(
            rendered.overrides,
            Some(json!({"text": "Commande A1 expédiée"}))
        );
    }

    #[test]
    fn a_syntax_error_names_the_field_line_and_column() {
        let error = Compiled::new(&source(json!({
            "default_locale": "en",
            "locales": {"en": {"body": "Hello\n{{ name "}}
        })))
        .expect_err("a syntax error");
        assert_eq!(error.pointer, "/locales/en/body");
        assert!(error.detail.contains("line 2"), "{}", error.detail);
    }

    #[test]
    fn missing_data_is_named_before_sending() {
        let template = shipped();
        let error = template
            .check_data(
                &json!({"order": {}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                &[Channel::Sms],
            )
            .expect_err("order.id is missing");
        assert_eq!(error.pointer, "/data/order/id");
        let error = template
            .check_data(&Map::new(), &[Channel::Sms])
            .expect_err("order is missing");
        assert_eq!(error.pointer, "/data/order");
    }

    #[test]
    fn the_schema_is_enforced_with_the_failing_path() {
        let template = Compiled::new(&source(json!({
            "default_locale": "en",
            "schema": {"type": "object", "properties": {"count": {"type": "integer"}}},
            "locales": {"en": {"body": "{{ count }} new"}}
        })))
        .expect("compiles");
        let error = template
            .check_data(
                &json!({"count": "three"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                &[],
            )
            .expect_err("not an integer");
        assert_eq!(error.pointer, "/data/count");
    }

    #[test]
    fn user_fields_render_per_recipient_and_are_placeholders_at_accept_time() {
        let template = Compiled::new(&source(json!({
            "default_locale": "en",
            "locales": {"en": {"body": "Hi {{ user.attributes.name }}, {{ n }} new"}}
        })))
        .expect("compiles");
        assert!(template.uses_user());
        let data = json!({"n": 3}).as_object().cloned().unwrap_or_default();
        template
            .check_data(&data, &[Channel::Http])
            .expect("accepted");
        let user = json!({"id": "u1", "attributes": {"name": "Ana"}});
        let rendered = template
            .render("en", Channel::Http, &data, Some(&user))
            .expect("renders");
        assert_eq!(rendered.body.as_deref(), Some("Hi Ana, 3 new"));
        let error = template
            .render(
                "en",
                Channel::Http,
                &data,
                Some(&json!({"id": "u2", "attributes": {}})),
            )
            .expect_err("no name");
        assert_eq!(error.pointer, "/locales/en/body");
    }

    #[test]
    fn bad_locales_and_fields_are_refused() {
        let bad = |value: Value| Compiled::new(&source(value)).expect_err("refused").pointer;
        assert_eq!(
            bad(json!({"default_locale": "e n", "locales": {"en": {}}})),
            "/default_locale"
        );
        assert_eq!(
            bad(json!({"default_locale": "de", "locales": {"en": {}}})),
            "/default_locale"
        );
        assert_eq!(
            bad(json!({"default_locale": "en", "locales": {"en": {"pager": {}}}})),
            "/locales/en/pager"
        );
        assert_eq!(
            bad(json!({"default_locale": "en", "locales": {"en": {"sms": "x"}}})),
            "/locales/en/sms"
        );
        assert_eq!(
            bad(json!({"default_locale": "en", "locales": {"en": {}, "EN": {}}})),
            "/locales/en"
        );
        assert_eq!(canonical_locale("fr-ca").as_deref(), Ok("fr-CA"));
    }
}
