//! Templates per app: `PUT/GET/DELETE /v1/templates/{name}`, `GET /v1/templates`, and
//! `POST /v1/templates/{name}/render` to preview one channel. Stored in Redis (`tpl:{app}`,
//! with a version counter per name in `tplv:{app}`); each `PUT` makes a new version, and a
//! message carries the template at the version it was accepted with.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sprayer_shared::model::{AppId, Channel, Content, GroupId, TemplateSource, UserId, now_ms};
use sprayer_shared::personal::profile::{Profile, profile_key, templates_key};
use sprayer_shared::personal::template::{
    Compiled, MAX_TEMPLATE_BYTES, TemplateError, canonical_locale,
};
use utoipa::ToSchema;

use crate::extract::{JsonBody, PathParams};
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::checked_id;
use crate::state::{AppState, Caller};

/// A template as stored: its version and when it was stored, then its source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTemplate {
    /// Its version, from 1.
    pub version: u64,
    /// When this version was stored (Unix ms).
    pub updated_at: i64,
    /// The source, locale tags canonical.
    pub source: TemplateSource,
}

/// A template as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    /// Its name.
    pub name: String,
    /// Its version: each `PUT` makes a new one.
    pub version: u64,
    /// When this version was stored (RFC 3339).
    pub updated_at: String,
    /// The template as stored (what the `PUT` took, locale tags canonical).
    pub template: TemplateSource,
}

/// The app's templates.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    /// Every template, by name.
    pub items: Vec<TemplateView>,
}

/// A preview request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The data, as a message would give it.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// The locale asked for (falls back as a send does).
    #[serde(default)]
    pub locale: Option<String>,
    /// The channel to preview.
    pub channel: String,
    /// A user whose profile fills `user.*` and, without `locale`, picks the locale.
    #[serde(default)]
    pub user: Option<String>,
}

/// What one channel would get.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RenderView {
    /// The locale used.
    pub locale: String,
    /// The channel.
    pub channel: String,
    /// The title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The channel's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub fields: Option<Value>,
    /// For sms: `gsm` or `ucs2`, and how many parts the text takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsPreview>,
    /// For apns: the payload's size in bytes (APNs takes at most 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns_payload_bytes: Option<usize>,
}

/// How an SMS text would go.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SmsPreview {
    /// `gsm` (GSM 03.38) or `ucs2`.
    pub encoding: String,
    /// The parts it takes.
    pub parts: usize,
    /// Its length in characters.
    pub characters: usize,
}

/// A template error as the API answers it.
pub fn template_problem(error: TemplateError) -> ApiError {
    ApiError::validation(error.pointer, error.detail)
}

fn checked_name(name: &str) -> Result<String, ApiError> {
    checked_id::<GroupId>("name", name).map(|name| name.as_str().to_owned())
}

fn versions_key(app: &AppId) -> String {
    format!("tplv:{{{app}}}")
}

/// Stores a template under a new version: the version counter and the template change
/// together.
static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local version = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. version .. ARGV[3])
return version
",
    )
});

fn view(name: String, stored: StoredTemplate) -> TemplateView {
    TemplateView {
        name,
        version: stored.version,
        updated_at: sprayer_shared::feed::rfc3339_ms(stored.updated_at),
        template: stored.source,
    }
}

/// The app's template `name`, if it has one.
pub async fn stored_template(
    state: &AppState,
    app: &AppId,
    name: &str,
) -> Result<Option<StoredTemplate>, ApiError> {
    let mut redis = state.redis.clone();
    let json: Option<String> = redis
        .hget(templates_key(app), name)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
}

/// Store a template (a new version).
#[utoipa::path(
    put, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    request_body = TemplateSource,
    responses(
        (status = 200, description = "Stored as a new version", body = TemplateView),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A syntax error (with line and column), a bad locale tag or schema", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is down", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
    body: JsonBody<TemplateSource>,
) -> Result<Json<TemplateView>, ApiError> {
    let name = checked_name(&name)?;
    if body.raw.len() > MAX_TEMPLATE_BYTES {
        return Err(ApiError::validation(
            "/locales",
            format!(
                "the template is {} bytes; at most {MAX_TEMPLATE_BYTES}, since it travels with each message",
                body.raw.len()
            ),
        ));
    }
    let compiled = Compiled::new(&body.value).map_err(template_problem)?;
    let updated_at = now_ms();
    let source = serde_json::to_string(compiled.source())
        .map_err(|error| ApiError::validation("/", error.to_string()))?;
    let mut redis = state.redis.clone();
    let key = templates_key(&caller.app);
    let (exists, count): (bool, usize) = redis::pipe()
        .hexists(&key, &name)
        .hlen(&key)
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let most = state.settings.accepter.max_templates;
    if !exists && count >= most {
        return Err(ApiError::validation(
            "name",
            format!("an app keeps at most {most} templates; delete one first"),
        ));
    }
    let version: u64 = STORE
        .key(&key)
        .key(versions_key(&caller.app))
        .arg(&name)
        .arg("{\"version\":")
        .arg(format!(
            ",\"updated_at\":{updated_at},\"source\":{source}}}"
        ))
        .invoke_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    metrics::counter!("sprayer_templates_stored_total").increment(1);
    Ok(Json(view(
        name,
        StoredTemplate {
            version,
            updated_at,
            source: compiled.source().clone(),
        },
    )))
}

/// Read a template.
#[utoipa::path(
    get, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The template's current version", body = TemplateView),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<Json<TemplateView>, ApiError> {
    let name = checked_name(&name)?;
    let stored = stored_template(&state, &caller.app, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template named {name}")))?;
    Ok(Json(view(name, stored)))
}

/// List the app's templates.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    responses(
        (status = 200, description = "Every template", body = TemplateList),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TemplateList>, ApiError> {
    let mut redis = state.redis.clone();
    let all: BTreeMap<String, String> = redis
        .hgetall(templates_key(&caller.app))
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let items = all
        .into_iter()
        .filter_map(|(name, json)| Some(view(name, serde_json::from_str(&json).ok()?)))
        .collect();
    Ok(Json(TemplateList { items }))
}

/// Delete a template; messages accepted with it keep the version they carry.
#[utoipa::path(
    delete, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let name = checked_name(&name)?;
    let mut redis = state.redis.clone();
    let removed: u64 = redis
        .hdel(templates_key(&caller.app), &name)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("no template named {name}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Preview one channel of a template with some data.
#[utoipa::path(
    post, path = "/v1/templates/{name}/render", tag = "templates",
    params(("name" = String, Path)),
    request_body = RenderRequest,
    responses(
        (status = 200, description = "What the channel would get", body = RenderView),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The data does not render, or a bad locale or channel", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn render(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
    body: JsonBody<RenderRequest>,
) -> Result<Json<RenderView>, ApiError> {
    let name = checked_name(&name)?;
    let request = body.value;
    let channel: Channel = request
        .channel
        .parse()
        .map_err(|error| ApiError::validation("/channel", format!("{error}")))?;
    let locale = request
        .locale
        .as_deref()
        .map(canonical_locale)
        .transpose()
        .map_err(|detail| ApiError::validation("/locale", detail))?;
    let user = request
        .user
        .as_deref()
        .map(|user| checked_id::<UserId>("/user", user))
        .transpose()?;
    let stored = stored_template(&state, &caller.app, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template named {name}")))?;
    let compiled = Compiled::new(&stored.source).map_err(template_problem)?;
    compiled
        .check_data(&request.data, &[channel])
        .map_err(template_problem)?;
    let profile = match &user {
        Some(user) => {
            let mut redis = state.redis.clone();
            let json: Option<String> = redis
                .hget(profile_key(&caller.app, user), "profile")
                .await
                .map_err(|error| ApiError::unavailable("redis", &error))?;
            Some(
                json.and_then(|json| serde_json::from_str::<Profile>(&json).ok())
                    .unwrap_or_default(),
            )
        }
        None => None,
    };
    let picked = compiled
        .pick_locale(&[
            locale.as_deref(),
            profile
                .as_ref()
                .and_then(|profile| profile.locale.as_deref()),
        ])
        .to_owned();
    let user_value = match (&user, &profile) {
        (Some(user), Some(profile)) => Some(profile.template_user(user)),
        _ => None,
    };
    let rendered = compiled
        .render(&picked, channel, &request.data, user_value.as_ref())
        .map_err(|error| {
            if user_value.is_none() && compiled.uses_user() {
                ApiError::validation(
                    "/user",
                    format!("the template reads user.*; name a user to preview it ({error})"),
                )
            } else {
                ApiError::validation("/data", error.to_string())
            }
        })?;
    let sms = (channel == Channel::Sms).then(|| {
        let text = rendered
            .overrides
            .as_ref()
            .and_then(|fields| fields["text"].as_str())
            .or(rendered.body.as_deref())
            .or(rendered.title.as_deref())
            .unwrap_or("");
        let encoded = sprayer_shared::sms_text::encode(text);
        SmsPreview {
            encoding: if encoded.data_coding == sprayer_shared::sms_text::DATA_CODING_UCS2 {
                "ucs2".into()
            } else {
                "gsm".into()
            },
            parts: encoded.parts.len(),
            characters: text.chars().count(),
        }
    });
    let apns_payload_bytes = (channel == Channel::Apns).then(|| {
        let content = Content {
            title: rendered.title.clone(),
            body: rendered.body.clone(),
            data: None,
        };
        let payload = sprayer_shared::model::apns_payload(&content, rendered.overrides.as_ref());
        serde_json::to_vec(&payload).map_or(0, |bytes| bytes.len())
    });
    Ok(Json(RenderView {
        locale: rendered.locale,
        channel: channel.as_str().to_owned(),
        title: rendered.title,
        body: rendered.body,
        fields: rendered.overrides,
        sms,
        apns_payload_bytes,
    }))
}
