"""Every route of the API the SDK calls: method name -> (HTTP method, path template, side).

`side` is `app` (the app key on the API) or `admin` (the admin token on the admin API). The
test suite checks that each route of the server's OpenAPI document is here.
"""

from typing import Dict, Tuple

Route = Tuple[str, str, str]

ROUTES: Dict[str, Route] = {
    # Messages and feedback.
    "send": ("POST", "/v1/messages", "app"),
    "get_message": ("GET", "/v1/messages/{id}", "app"),
    "cancel_message": ("DELETE", "/v1/messages/{id}", "app"),
    "list_deliveries": ("GET", "/v1/messages/{id}/deliveries", "app"),
    "get_recipient": ("GET", "/v1/messages/{id}/recipients/{user}", "app"),
    "cancel": ("POST", "/v1/cancellations", "app"),
    # Endpoints.
    "register_endpoints": ("POST", "/v1/endpoints", "app"),
    "list_endpoints": ("GET", "/v1/users/{user}/endpoints", "app"),
    "put_endpoint": ("PUT", "/v1/users/{user}/endpoints/{channel}/{device}", "app"),
    "delete_endpoint": ("DELETE", "/v1/users/{user}/endpoints/{channel}/{device}", "app"),
    "ws_token": ("POST", "/v1/users/{user}/ws-token", "app"),
    "get_presence": ("GET", "/v1/users/{user}/presence", "app"),
    # Groups.
    "list_members": ("GET", "/v1/groups/{group}/members", "app"),
    "add_members": ("POST", "/v1/groups/{group}/members", "app"),
    "put_member": ("PUT", "/v1/groups/{group}/members/{user}", "app"),
    "remove_member": ("DELETE", "/v1/groups/{group}/members/{user}", "app"),
    # Users, preferences, categories.
    "get_user": ("GET", "/v1/users/{user}", "app"),
    "put_user": ("PUT", "/v1/users/{user}", "app"),
    "delete_user": ("DELETE", "/v1/users/{user}", "app"),
    "get_preferences": ("GET", "/v1/users/{user}/preferences", "app"),
    "put_preferences": ("PUT", "/v1/users/{user}/preferences", "app"),
    "list_categories": ("GET", "/v1/categories", "app"),
    "get_category": ("GET", "/v1/categories/{key}", "app"),
    "put_category": ("PUT", "/v1/categories/{key}", "app"),
    "delete_category": ("DELETE", "/v1/categories/{key}", "app"),
    # Templates.
    "list_templates": ("GET", "/v1/templates", "app"),
    "get_template": ("GET", "/v1/templates/{name}", "app"),
    "put_template": ("PUT", "/v1/templates/{name}", "app"),
    "delete_template": ("DELETE", "/v1/templates/{name}", "app"),
    "render_template": ("POST", "/v1/templates/{name}/render", "app"),
    # Escalation policies.
    "list_policies": ("GET", "/v1/policies", "app"),
    "get_policy": ("GET", "/v1/policies/{name}", "app"),
    "put_policy": ("PUT", "/v1/policies/{name}", "app"),
    "delete_policy": ("DELETE", "/v1/policies/{name}", "app"),
    # Events.
    "events": ("GET", "/v1/events", "app"),
    "list_event_endpoints": ("GET", "/v1/event-endpoints", "app"),
    "create_event_endpoint": ("POST", "/v1/event-endpoints", "app"),
    "get_event_endpoint": ("GET", "/v1/event-endpoints/{id}", "app"),
    "update_event_endpoint": ("PATCH", "/v1/event-endpoints/{id}", "app"),
    "delete_event_endpoint": ("DELETE", "/v1/event-endpoints/{id}", "app"),
    "rotate_event_endpoint_secret": ("POST", "/v1/event-endpoints/{id}/rotate-secret", "app"),
    "test_event_endpoint": ("POST", "/v1/event-endpoints/{id}/test", "app"),
    "replay_event_endpoint": ("POST", "/v1/event-endpoints/{id}/replay", "app"),
    # Administration.
    "list_apps": ("GET", "/admin/v1/apps", "admin"),
    "create_app": ("POST", "/admin/v1/apps", "admin"),
    "create_app_key": ("POST", "/admin/v1/apps/{app}/keys", "admin"),
    "delete_app_key": ("DELETE", "/admin/v1/apps/{app}/keys/{key_id}", "admin"),
    "get_providers": ("GET", "/admin/v1/apps/{app}/providers", "admin"),
    "put_provider": ("PUT", "/admin/v1/apps/{app}/providers/{channel}", "admin"),
    "delete_provider": ("DELETE", "/admin/v1/apps/{app}/providers/{channel}", "admin"),
    "stats": ("GET", "/admin/v1/stats", "admin"),
}
