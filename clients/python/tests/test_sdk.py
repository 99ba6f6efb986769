"""The SDK against a running server, run by the project's `make test`, which sets:

    SPRAYER_TEST_API, SPRAYER_TEST_KEY              the API and an app key
    SPRAYER_TEST_ADMIN_API, SPRAYER_TEST_ADMIN_TOKEN the admin API and its token
"""

import asyncio
import os
import time

import httpx
import pytest

import sprayer
from sprayer import AsyncClient, Client, SprayerError, webhooks


def env(name: str) -> str:
    value = os.environ.get(name)
    assert value, f"{name} is not set: run these tests through make test"
    return value


@pytest.fixture()
def client():
    with Client(
        env("SPRAYER_TEST_API"),
        env("SPRAYER_TEST_KEY"),
        admin_url=env("SPRAYER_TEST_ADMIN_API"),
        admin_token=env("SPRAYER_TEST_ADMIN_TOKEN"),
    ) as client:
        yield client


def documented_routes(base: str) -> set:
    document = httpx.get(f"{base}/openapi.json").json()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_route_of_the_openapi_documents_has_a_method():
    routes = documented_routes(env("SPRAYER_TEST_API")) | documented_routes(env("SPRAYER_TEST_ADMIN_API"))
    covered = {(method, path) for method, path, _ in sprayer.ROUTES.values()}
    missing = sorted(routes - covered)
    assert not missing, f"routes of the OpenAPI documents without an SDK method: {missing}"
    assert not sorted(covered - routes), "SDK routes the server does not document"
    for name in sprayer.ROUTES:
        assert callable(getattr(Client, name)), name
        assert callable(getattr(AsyncClient, name)), name


def wait_for(check, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("not within the time")


def test_send_and_read_its_feedback(client):
    token = client.ws_token("py-user")
    assert token["user"] == "py-user"
    sent = client.send(
        {"to": {"user": "py-user"}, "channels": ["ws"], "content": {"title": "Hi", "body": "from Python"}},
        idempotency_key="py-send-1",
    )
    again = client.send(
        {"to": {"user": "py-user"}, "channels": ["ws"], "content": {"title": "Hi", "body": "from Python"}},
        idempotency_key="py-send-1",
    )
    assert again["id"] == sent["id"], "the idempotency key holds"
    summary = wait_for(lambda: (s := client.get_message(sent["id"]))["summary"].get("ws", {}).get("queued") == 1 and s)
    assert summary["total"] == 1
    deliveries = client.list_deliveries(sent["id"], channel="ws")
    assert deliveries["items"][0]["user"] == "py-user"
    recipient = client.get_recipient(sent["id"], "py-user")
    assert recipient["user"] == "py-user"
    endpoints = client.list_endpoints("py-user")
    assert [item["channel"] for item in endpoints["items"]] == ["ws"]


def test_a_refusal_is_an_exception_naming_the_field(client):
    with pytest.raises(SprayerError) as refused:
        client.put_user("py-user", {"timezone": "Mars/Olympus"})
    assert refused.value.status == 422
    assert refused.value.field == "/timezone"
    assert refused.value.type.endswith("validation")
    with pytest.raises(SprayerError) as missing:
        client.get_template("no-such-template")
    assert missing.value.status == 404


def test_profiles_categories_preferences_and_templates(client):
    client.put_user("py-user", {"locale": "fr-CA", "timezone": "America/Montreal"})
    assert client.get_user("py-user")["locale"] == "fr-CA"
    client.put_category("py-news", {"description": "news"})
    assert any(item["key"] == "py-news" for item in client.list_categories()["items"])
    client.put_preferences("py-user", {"categories": {"py-news": {"enabled": False}}})
    assert client.get_preferences("py-user") == {"categories": {"py-news": {"enabled": False}}}
    stored = client.put_template(
        "py-hello",
        {"default_locale": "en", "locales": {"en": {"title": "Hi {{ name }}", "body": "Hello {{ name }}"},
                                             "fr": {"title": "Salut {{ name }}", "body": "Bonjour {{ name }}"}}},
    )
    assert stored["version"] == 1
    preview = client.render_template("py-hello", {"data": {"name": "Ana"}, "locale": "fr-CA", "channel": "sms"})
    assert "Bonjour Ana" in str(preview)
    assert any(item["name"] == "py-hello" for item in client.list_templates()["items"])
    client.delete_template("py-hello")
    client.delete_category("py-news")


def test_the_async_client_has_the_same_methods():
    async def run():
        async with AsyncClient(env("SPRAYER_TEST_API"), env("SPRAYER_TEST_KEY")) as client:
            await client.add_members("py-group", ["a1", "a2", "a3"])
            members = await client.list_members("py-group", limit=2)
            assert len(members["items"]) == 2
            await client.remove_member("py-group", "a1")
            page = await client.events(limit=10)
            assert page["events"] == [] and page["next"], page
            with pytest.raises(SprayerError) as refused:
                await client.send({"to": {"user": "a2"}, "content": {}})
            assert refused.value.status == 422
            assert refused.value.field

    asyncio.run(run())


def test_the_admin_routes(client):
    apps = client.list_apps()
    assert isinstance(apps, list) and apps, apps
    stats = client.stats()
    assert "window" in stats


def test_webhook_signatures():
    # The worked example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    assert webhooks.verify(secret, headers, body, now=1614265330) == {"test": 2432232314}
    # A rotated secret: either signature may match.
    rotated = dict(headers, **{"webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]})
    assert webhooks.verify(secret, rotated, body, now=1614265330)
    with pytest.raises(webhooks.InvalidSignature):
        webhooks.verify(secret, headers, b'{"test": 1}', now=1614265330)
    with pytest.raises(webhooks.InvalidSignature):
        webhooks.verify(secret, headers, body, now=1614265330 + 3600)
