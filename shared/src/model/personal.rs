//! What makes a message personal, carried by each of its jobs: the template it is rendered
//! from (with the data and the template's source at the version used), its category, and what
//! it does in a recipient's quiet hours. See [`crate::personal`] for how they are applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A template as stored with `PUT /v1/templates/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSource {
    /// The locale used when neither the message nor the user's profile names one the template
    /// has (a BCP 47 tag such as `en` or `fr-CA`); one of `locales`.
    pub default_locale: String,
    /// A JSON Schema the message's `data` must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    /// Per locale: `title` and `body` (templates), and per channel an object whose string
    /// fields are templates (`{"sms": {"text": ".."}, "email": {"subject": "..", "html": ".."}}`),
    /// taking the place of that channel's `overrides`.
    #[schema(value_type = Object)]
    pub locales: BTreeMap<String, Map<String, Value>>,
}

/// The template a message is rendered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateUse {
    /// Its name.
    pub name: String,
    /// The version used (each `PUT` makes a new one).
    pub version: u64,
    /// The locale the message asked for, if any (canonical BCP 47).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The data it renders with.
    #[serde(default)]
    pub data: Map<String, Value>,
    /// The template at that version.
    pub source: TemplateSource,
}

/// Which template, at which version, a message was rendered from: kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateVersion {
    /// The template's name.
    pub name: String,
    /// Its version.
    pub version: u64,
}

/// The category a message belongs to, as it stood when the message was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryUse {
    /// The category's key.
    pub key: String,
    /// A required category reaches every recipient, whatever their preferences.
    #[serde(default)]
    pub required: bool,
}

/// What a message does when a recipient is in their quiet hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuietMode {
    /// Held until the quiet hours end, then sent (within the message's TTL).
    #[default]
    Defer,
    /// Not sent: recorded as `skipped` with reason `quiet_hours`.
    Drop,
    /// Sent at once.
    Ignore,
}

impl QuietMode {
    /// Whether this is the default (`defer`), which jobs leave out.
    pub fn is_default(&self) -> bool {
        *self == QuietMode::Defer
    }
}

/// The personal parts of a message; a job without them is sent as its content says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Personal {
    /// The template, if the message was sent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateUse>,
    /// The category, if the message named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<CategoryUse>,
    /// What the message does in quiet hours.
    #[serde(default, skip_serializing_if = "QuietMode::is_default")]
    pub quiet_hours: QuietMode,
}
