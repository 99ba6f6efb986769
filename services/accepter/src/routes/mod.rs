//! The API's routes, one module per group, and the OpenAPI document generated from them.

pub mod admin;
pub mod endpoints;
pub mod feedback;
pub mod groups;
pub mod messages;
pub mod ws_token;

use axum::Router;
use axum::routing::{get, post, put};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::state::AppState;

/// The OpenAPI document of the API, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sprayer", description = "Send a message once; Sprayer delivers it over every channel the recipients registered."),
    paths(
        messages::send, feedback::message, feedback::deliveries,
        endpoints::put, endpoints::delete, endpoints::list, ws_token::mint,
        groups::put, groups::delete, groups::list,
    ),
    modifiers(&Security),
    tags((name = "messages"), (name = "endpoints"), (name = "groups"))
)]
pub struct ApiDoc;

/// The OpenAPI document of the admin API, served at `/openapi.json` on the admin listener.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sprayer admin API", description = "Apps, their keys and their provider settings. Served on its own listener (admin.listen), only when admin.token is set."),
    paths(
        admin::create_app, admin::list_apps, admin::add_key, admin::revoke_key,
        admin::set_provider, admin::providers, admin::remove_provider,
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
        .route("/v1/messages/{id}", get(feedback::message))
        .route("/v1/messages/{id}/deliveries", get(feedback::deliveries))
        .route("/v1/users/{user}/endpoints", get(endpoints::list))
        .route(
            "/v1/users/{user}/endpoints/{channel}/{device}",
            put(endpoints::put).delete(endpoints::delete),
        )
        .route("/v1/users/{user}/ws-token", post(ws_token::mint))
        .route("/v1/groups/{group}/members", get(groups::list))
        .route(
            "/v1/groups/{group}/members/{user}",
            put(groups::put).delete(groups::delete),
        )
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
}

/// The admin API's routes.
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
        .route(
            "/openapi.json",
            get(|| async { axum::Json(AdminDoc::openapi()) }),
        )
}
