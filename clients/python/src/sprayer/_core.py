"""What the sync and async clients share: the errors, the request of each route, and the
methods, written once (each returns what the client's `_call` returns: the answer, or an
awaitable of it)."""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import quote

from ._routes import ROUTES

Json = Dict[str, Any]


class SprayerError(Exception):
    """A refusal by the server, from its RFC 9457 problem: `status`, `type`, `title`,
    `detail` and, when the input is at fault, the `field` (a JSON Pointer, a parameter or a
    header) that names it."""

    def __init__(self, status: int, problem: Mapping[str, Any]):
        self.status = status
        self.problem = dict(problem)
        self.type: str = str(problem.get("type", "about:blank"))
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        self.field: Optional[str] = problem.get("field")
        where = f" ({self.field})" if self.field else ""
        super().__init__(f"{status} {self.title}: {self.detail}{where}")


class QuotaExhausted(SprayerError):
    """A 402: the app's balance or quota does not cover the send."""


class RateLimited(SprayerError):
    """A 429: too many requests; `retry_after` seconds to wait, when the server said."""

    retry_after: Optional[float] = None


def error_of(status: int, body: Any, headers: Mapping[str, str]) -> SprayerError:
    """The exception of a refusal."""
    problem = body if isinstance(body, dict) else {"title": "Error", "detail": str(body)}
    if status == 402:
        return QuotaExhausted(status, problem)
    if status == 429:
        error = RateLimited(status, problem)
        try:
            error.retry_after = float(headers.get("retry-after", ""))
        except ValueError:
            error.retry_after = None
        return error
    return SprayerError(status, problem)


def request_of(
    name: str, path_params: Mapping[str, str]
) -> Tuple[str, str, str]:
    """The HTTP method, the path with its parameters filled in, and the side of route `name`."""
    method, template, side = ROUTES[name]
    path = template
    for key, value in path_params.items():
        path = path.replace("{" + key + "}", quote(str(value), safe=""))
    return method, path, side


def _query(**params: Any) -> Dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


class Methods:
    """One method per route; `_call` is the client's."""

    def _call(
        self,
        name: str,
        path: Optional[Mapping[str, str]] = None,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Any:
        raise NotImplementedError

    # Messages and feedback.
    def send(self, message: Json, *, idempotency_key: Optional[str] = None) -> Any:
        """Send a message (`to`, `channels`, `content` or `template`, ...); answers its `id`."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("send", json=message, headers=headers)

    def get_message(self, id: str) -> Any:
        """A message's summary: per channel, how many deliveries are in each status."""
        return self._call("get_message", {"id": id})

    def cancel_message(self, id: str) -> Any:
        """Cancel a scheduled or running message."""
        return self._call("cancel_message", {"id": id})

    def list_deliveries(
        self, id: str, *, status: Optional[str] = None, channel: Optional[str] = None,
        cursor: Optional[str] = None, limit: Optional[int] = None,
    ) -> Any:
        """A page of a message's deliveries."""
        params = _query(status=status, channel=channel, cursor=cursor, limit=limit)
        return self._call("list_deliveries", {"id": id}, params=params)

    def get_recipient(self, id: str, user: str) -> Any:
        """What happened to one recipient of a message."""
        return self._call("get_recipient", {"id": id, "user": user})

    def cancel(self, cancellation: Json) -> Any:
        """Cancel messages by their cancel key."""
        return self._call("cancel", json=cancellation)

    # Endpoints.
    def register_endpoints(self, endpoints: Iterable[Json]) -> Any:
        """Register many endpoints (`{"user", "channel", "device", "address"}` each)."""
        return self._call("register_endpoints", json={"endpoints": list(endpoints)})

    def list_endpoints(self, user: str, *, cursor: Optional[str] = None, limit: Optional[int] = None) -> Any:
        """A user's endpoints, their secrets redacted."""
        return self._call("list_endpoints", {"user": user}, params=_query(cursor=cursor, limit=limit))

    def put_endpoint(self, user: str, channel: str, device: str, address: Json) -> Any:
        """Register or replace one endpoint."""
        return self._call("put_endpoint", {"user": user, "channel": channel, "device": device}, json=address)

    def delete_endpoint(self, user: str, channel: str, device: str) -> Any:
        """Remove one endpoint."""
        return self._call("delete_endpoint", {"user": user, "channel": channel, "device": device})

    def ws_token(self, user: str, *, ttl: Optional[int] = None) -> Any:
        """A token the user's browser connects (and reads its inbox) with."""
        return self._call("ws_token", {"user": user}, json=_query(ttl=ttl))

    def get_presence(self, user: str) -> Any:
        """Whether the user has sockets open, on how many nodes."""
        return self._call("get_presence", {"user": user})

    # Groups.
    def list_members(self, group: str, *, cursor: Optional[str] = None, limit: Optional[int] = None) -> Any:
        """A page of a group's members."""
        return self._call("list_members", {"group": group}, params=_query(cursor=cursor, limit=limit))

    def add_members(self, group: str, users: Iterable[str]) -> Any:
        """Add users to a group (created on first use)."""
        return self._call("add_members", {"group": group}, json={"users": list(users)})

    def put_member(self, group: str, user: str) -> Any:
        """Add one user to a group."""
        return self._call("put_member", {"group": group, "user": user})

    def remove_member(self, group: str, user: str) -> Any:
        """Take one user out of a group."""
        return self._call("remove_member", {"group": group, "user": user})

    # Users, preferences, categories.
    def get_user(self, user: str) -> Any:
        """A user's profile."""
        return self._call("get_user", {"user": user})

    def put_user(self, user: str, profile: Json) -> Any:
        """Store a user's profile (`locale`, `timezone`, `attributes`, `quiet_hours`)."""
        return self._call("put_user", {"user": user}, json=profile)

    def delete_user(self, user: str) -> Any:
        """Delete a user's profile and preferences."""
        return self._call("delete_user", {"user": user})

    def get_preferences(self, user: str) -> Any:
        """A user's preferences."""
        return self._call("get_preferences", {"user": user})

    def put_preferences(self, user: str, preferences: Json) -> Any:
        """Set a user's preferences (`channels`, `categories`)."""
        return self._call("put_preferences", {"user": user}, json=preferences)

    def list_categories(self) -> Any:
        """The app's categories."""
        return self._call("list_categories")

    def get_category(self, key: str) -> Any:
        """One category."""
        return self._call("get_category", {"key": key})

    def put_category(self, key: str, category: Json) -> Any:
        """Store a category (`required`, `description`, `stop_by_sms`)."""
        return self._call("put_category", {"key": key}, json=category)

    def delete_category(self, key: str) -> Any:
        """Delete a category."""
        return self._call("delete_category", {"key": key})

    # Templates.
    def list_templates(self) -> Any:
        """The app's templates."""
        return self._call("list_templates")

    def get_template(self, name: str) -> Any:
        """One template, its current version."""
        return self._call("get_template", {"name": name})

    def put_template(self, name: str, template: Json) -> Any:
        """Store a template (a new version each time)."""
        return self._call("put_template", {"name": name}, json=template)

    def delete_template(self, name: str) -> Any:
        """Delete a template."""
        return self._call("delete_template", {"name": name})

    def render_template(self, name: str, request: Json) -> Any:
        """Preview one channel of a template (`data`, `locale`, `channel`)."""
        return self._call("render_template", {"name": name}, json=request)

    # Escalation policies.
    def list_policies(self) -> Any:
        """The app's escalation policies."""
        return self._call("list_policies")

    def get_policy(self, name: str) -> Any:
        """One escalation policy."""
        return self._call("get_policy", {"name": name})

    def put_policy(self, name: str, policy: Json) -> Any:
        """Store an escalation policy (`steps`)."""
        return self._call("put_policy", {"name": name}, json=policy)

    def delete_policy(self, name: str) -> Any:
        """Delete an escalation policy."""
        return self._call("delete_policy", {"name": name})

    # Events.
    def events(self, *, after: Optional[str] = None, limit: Optional[int] = None, types: Optional[str] = None) -> Any:
        """A page of the app's event feed, in order, after a cursor."""
        return self._call("events", params=_query(after=after, limit=limit, types=types))

    def list_event_endpoints(self) -> Any:
        """The app's event endpoints."""
        return self._call("list_event_endpoints")

    def create_event_endpoint(self, endpoint: Json) -> Any:
        """Create an event endpoint (`url`, `events`, ...); the answer shows its secret once."""
        return self._call("create_event_endpoint", json=endpoint)

    def get_event_endpoint(self, id: str) -> Any:
        """One event endpoint."""
        return self._call("get_event_endpoint", {"id": id})

    def update_event_endpoint(self, id: str, changes: Json) -> Any:
        """Change an event endpoint (`url`, filters, `enabled`)."""
        return self._call("update_event_endpoint", {"id": id}, json=changes)

    def delete_event_endpoint(self, id: str) -> Any:
        """Delete an event endpoint."""
        return self._call("delete_event_endpoint", {"id": id})

    def rotate_event_endpoint_secret(self, id: str) -> Any:
        """A new secret; the old one stays valid for a day."""
        return self._call("rotate_event_endpoint_secret", {"id": id})

    def test_event_endpoint(self, id: str) -> Any:
        """Send a `ping` event to the endpoint."""
        return self._call("test_event_endpoint", {"id": id})

    def replay_event_endpoint(self, id: str, after: str) -> Any:
        """Send the feed again from a cursor."""
        return self._call("replay_event_endpoint", {"id": id}, json={"after": after})

    # Administration (the admin token on the admin API).
    def list_apps(self) -> Any:
        """Every app."""
        return self._call("list_apps")

    def create_app(self, app: Json) -> Any:
        """Create an app; the answer shows its first key once."""
        return self._call("create_app", json=app)

    def create_app_key(self, app: str) -> Any:
        """A new key of an app."""
        return self._call("create_app_key", {"app": app})

    def delete_app_key(self, app: str, key_id: str) -> Any:
        """Revoke a key of an app."""
        return self._call("delete_app_key", {"app": app, "key_id": key_id})

    def get_providers(self, app: str) -> Any:
        """An app's provider settings, secrets redacted."""
        return self._call("get_providers", {"app": app})

    def put_provider(self, app: str, channel: str, settings: Json) -> Any:
        """Set an app's provider settings of one channel."""
        return self._call("put_provider", {"app": app, "channel": channel}, json=settings)

    def delete_provider(self, app: str, channel: str) -> Any:
        """Remove an app's provider settings of one channel."""
        return self._call("delete_provider", {"app": app, "channel": channel})

    def stats(self) -> Any:
        """Traffic and queues of the installation."""
        return self._call("stats")


def split_sides(
    base_url: str, key: Optional[str], admin_url: Optional[str], admin_token: Optional[str]
) -> Dict[str, Tuple[str, Optional[str]]]:
    """The base URL and bearer credential of each side."""
    return {
        "app": (base_url.rstrip("/"), key),
        "admin": ((admin_url or base_url).rstrip("/"), admin_token),
    }


def answer_of(status: int, text: str, headers: Mapping[str, str]) -> Any:
    """The parsed answer, or the exception of a refusal."""
    import json as _json

    body: Any = None
    if text:
        try:
            body = _json.loads(text)
        except ValueError:
            body = text
    if status >= 400:
        raise error_of(status, body, headers)
    return body


__all__: List[str] = ["Methods", "SprayerError", "QuotaExhausted", "RateLimited"]
