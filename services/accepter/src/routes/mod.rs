//! The API's routes, one module per group, and the OpenAPI document generated from them.

pub mod admin;
pub mod console;
pub mod endpoints;
pub mod events;
pub mod feedback;
pub mod groups;
pub mod messages;
pub mod orchestration;
pub mod presence;
pub mod profiles;
pub mod stats;
pub mod templates;
pub mod ws_token;

use axum::Router;
use axum::routing::{get, post, put};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use serde_json::{Value, json};
use sprayer_shared::model::{Channel, MAX_ID_LEN};

use crate::state::AppState;

/// The OpenAPI document of the API, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sprayer", description = "Send a message once; Sprayer delivers it over every channel the recipients registered."),
    paths(
        messages::send, feedback::message, feedback::deliveries, feedback::recipient,
        endpoints::put, endpoints::add, endpoints::delete, endpoints::list, ws_token::mint,
        groups::put, groups::add, groups::delete, groups::list,
        events::create, events::list, events::read, events::change, events::delete,
        events::rotate_secret, events::test, events::replay, events::feed, presence::read,
        orchestration::cancel_message, orchestration::cancel_by_key, orchestration::put_policy,
        orchestration::get_policy, orchestration::list_policies, orchestration::delete_policy,
        templates::put, templates::get, templates::list, templates::delete, templates::render,
        profiles::put_profile, profiles::get_profile, profiles::delete_profile,
        profiles::put_preferences, profiles::get_preferences, profiles::put_category,
        profiles::get_category, profiles::list_categories, profiles::delete_category,
    ),
    components(schemas(
        sprayer_shared::model::EventEnvelope, sprayer_shared::model::EventType,
        sprayer_shared::model::MessageAcceptedData, sprayer_shared::model::DeliveryData,
        sprayer_shared::model::EndpointPrunedData, sprayer_shared::model::UserOnlineData,
        sprayer_shared::model::UserOfflineData, sprayer_shared::model::InboundSmsData,
        sprayer_shared::model::EndpointDisabledData,
    )),
    modifiers(&Security),
    tags((name = "messages"), (name = "endpoints"), (name = "groups"), (name = "events"), (name = "policies"), (name = "templates"), (name = "users"))
)]
pub struct ApiDoc;

/// The OpenAPI document of the admin API, served at `/openapi.json` on the admin listener.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sprayer admin API", description = "Apps, their keys and their provider settings; traffic, feedback and queue stats. Served on its own listener (admin.listen), only when admin.token is set, beside the operator console (GET /console)."),
    paths(
        admin::create_app, admin::list_apps, admin::add_key, admin::revoke_key,
        admin::set_provider, admin::providers, admin::remove_provider, stats::stats,
    ),
    modifiers(&Security),
    tags((name = "admin"))
)]
pub struct AdminDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("app_key", bearer());
        components.add_security_scheme("admin_token", bearer());
    }
}

/// The API routes (without the operations endpoints).
pub fn api() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(messages::send))
        .route(
            "/v1/messages/{id}",
            get(feedback::message).delete(orchestration::cancel_message),
        )
        .route("/v1/cancellations", post(orchestration::cancel_by_key))
        .route("/v1/policies", get(orchestration::list_policies))
        .route(
            "/v1/policies/{name}",
            get(orchestration::get_policy)
                .put(orchestration::put_policy)
                .delete(orchestration::delete_policy),
        )
        .route("/v1/templates", get(templates::list))
        .route(
            "/v1/templates/{name}",
            get(templates::get)
                .put(templates::put)
                .delete(templates::delete),
        )
        .route("/v1/templates/{name}/render", post(templates::render))
        .route(
            "/v1/users/{user}",
            get(profiles::get_profile)
                .put(profiles::put_profile)
                .delete(profiles::delete_profile),
        )
        .route(
            "/v1/users/{user}/preferences",
            get(profiles::get_preferences).put(profiles::put_preferences),
        )
        .route("/v1/categories", get(profiles::list_categories))
        .route(
            "/v1/categories/{key}",
            get(profiles::get_category)
                .put(profiles::put_category)
                .delete(profiles::delete_category),
        )
        .route("/v1/messages/{id}/deliveries", get(feedback::deliveries))
        .route(
            "/v1/messages/{id}/recipients/{user}",
            get(feedback::recipient),
        )
        .route("/v1/endpoints", post(endpoints::add))
        .route("/v1/users/{user}/endpoints", get(endpoints::list))
        .route(
            "/v1/users/{user}/endpoints/{channel}/{device}",
            put(endpoints::put).delete(endpoints::delete),
        )
        .route("/v1/users/{user}/ws-token", post(ws_token::mint))
        .route("/v1/users/{user}/presence", get(presence::read))
        .route(
            "/v1/groups/{group}/members",
            get(groups::list).post(groups::add),
        )
        .route(
            "/v1/groups/{group}/members/{user}",
            put(groups::put).delete(groups::delete),
        )
        .route(
            "/v1/event-endpoints",
            post(events::create).get(events::list),
        )
        .route(
            "/v1/event-endpoints/{id}",
            get(events::read)
                .patch(events::change)
                .delete(events::delete),
        )
        .route(
            "/v1/event-endpoints/{id}/rotate-secret",
            post(events::rotate_secret),
        )
        .route("/v1/event-endpoints/{id}/test", post(events::test))
        .route("/v1/event-endpoints/{id}/replay", post(events::replay))
        .route("/v1/events", get(events::feed))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(api_document()) }),
        )
}

/// The admin API's routes and the operator console.
pub fn admin() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/apps",
            post(admin::create_app).get(admin::list_apps),
        )
        .route("/admin/v1/apps/{app}/keys", post(admin::add_key))
        .route(
            "/admin/v1/apps/{app}/keys/{key_id}",
            axum::routing::delete(admin::revoke_key),
        )
        .route("/admin/v1/apps/{app}/providers", get(admin::providers))
        .route(
            "/admin/v1/apps/{app}/providers/{channel}",
            put(admin::set_provider).delete(admin::remove_provider),
        )
        .route("/admin/v1/stats", get(stats::stats))
        .route("/console", get(console::page))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(admin_document()) }),
        )
}

/// The app API's OpenAPI document, completed (see `complete`).
pub fn api_document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    complete(&mut document, true);
    document
}

/// The admin API's OpenAPI document, completed (see `complete`).
pub fn admin_document() -> Value {
    let mut document = serde_json::to_value(AdminDoc::openapi()).unwrap_or_default();
    complete(&mut document, false);
    document
}

/// Adds to every operation what the annotations would repeat everywhere: the rules of ids and
/// the names of channels and statuses on their parameters, and the problem answers any request
/// may get (401 without a valid key, 429 above the app's rate when `rate_limited`, 503 with a
/// store down; 404 and 422 where the path names something; 400, 413 and 415 where there is a
/// body).
fn complete(document: &mut Value, rate_limited: bool) {
    let id = json!({ "type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "pattern": "^[A-Za-z0-9._@+=-]+$" });
    let channels: Vec<&str> = Channel::ALL
        .iter()
        .map(|channel| channel.as_str())
        .collect();
    let statuses = ["queued", "sent", "delivered", "read", "failed", "expired"];
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } },
        })
    };
    let retry_later = |description: &str| {
        let mut answer = problem(description);
        answer["headers"] = json!({ "Retry-After": {
            "description": "Seconds to wait before trying again",
            "required": true,
            "schema": { "type": "integer", "minimum": 1 },
        } });
        answer
    };
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let mut has_parameters = false;
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                for parameter in parameters.iter_mut() {
                    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                    let place = parameter["in"].as_str().unwrap_or_default().to_owned();
                    has_parameters |= place == "path" || place == "query";
                    let schema = match (name.as_str(), place.as_str()) {
                        ("user" | "group" | "device" | "app" | "key_id", "path") => id.clone(),
                        ("channel", _) => json!({ "type": "string", "enum": channels }),
                        ("status", "query") => json!({ "type": "string", "enum": statuses }),
                        ("limit", "query") => {
                            json!({ "type": "integer", "minimum": 1, "maximum": 1000 })
                        }
                        _ => continue,
                    };
                    parameter["schema"] = schema;
                }
            }
            let has_body = operation.get("requestBody").is_some();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut add = |status: &str, answer: Value| {
                responses.entry(status).or_insert(answer);
            };
            add("401", problem("No key, or a key that is not valid"));
            if rate_limited {
                add("429", retry_later("Above the app's request rate"));
            }
            add(
                "503",
                retry_later("A store is unavailable; nothing was done"),
            );
            if path.contains('{') {
                add("404", problem("Nothing of that name belongs to the caller"));
            }
            if has_parameters {
                add(
                    "422",
                    problem("A parameter is not valid (named in `field`)"),
                );
            }
            if has_body {
                add("400", problem("The body is not JSON of the expected shape"));
                add("413", problem("The body is too large"));
                add("415", problem("The body is not application/json"));
                add("422", problem("A value is not valid (named in `field`)"));
            }
        }
    }
}
