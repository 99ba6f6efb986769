// The package against a running deliverer, with Node's test runner. Node 20 has neither
// WebSocket nor EventSource, so the client falls back to long-poll: these tests prove that
// transport, the inbox API and the refusals. The project's `make test` runs them with:
//   SPRAYER_TEST_WS_URL  the deliverer's ws://…/v1/ws
//   SPRAYER_TEST_API     the accepter's http://… (to send)
//   SPRAYER_TEST_KEY     the app key
//   SPRAYER_TEST_USER    a user whose inbox is open, and SPRAYER_TEST_TOKEN a token of theirs
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { SprayerClient } from "../sprayer-client.js";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run these tests through make test`);
  return value;
};

const once = (target, type, accept = () => true, ms = 20000) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} event within ${ms} ms`)), ms);
    const listener = (event) => {
      if (!accept(event.detail)) return;
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve(event.detail);
    };
    target.addEventListener(type, listener);
  });

async function send(body) {
  const response = await fetch(`${env("SPRAYER_TEST_API")}/v1/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${env("SPRAYER_TEST_KEY")}`, "Content-Type": "application/json" },
    body: JSON.stringify({ to: { user: env("SPRAYER_TEST_USER") }, channels: ["ws"], content: { title: "t", body } }),
  });
  assert.equal(response.status, 202);
  return (await response.json()).id;
}

async function deliveredCount(id) {
  const response = await fetch(`${env("SPRAYER_TEST_API")}/v1/messages/${id}`, {
    headers: { Authorization: `Bearer ${env("SPRAYER_TEST_KEY")}` },
  });
  const summary = await response.json();
  return summary?.summary?.ws?.delivered ?? 0;
}

let client;

before(async () => {
  client = new SprayerClient({ url: env("SPRAYER_TEST_WS_URL"), token: env("SPRAYER_TEST_TOKEN") });
});

after(() => client.close());

test("without WebSocket or EventSource it falls back to long-poll and gets and acks messages", async () => {
  assert.deepEqual(client.transports, ["poll"]);
  const opened = once(client, "open");
  client.connect();
  assert.equal((await opened).transport, "poll");
  const arrives = once(client, "message", (message) => message.body === "over long-poll");
  const id = await send("over long-poll");
  const message = await arrives;
  assert.equal(message.id, id);
  const acked = once(client, "acked", (ids) => ids.includes(id));
  client.ack(id);
  await acked;
  for (let tries = 0; (await deliveredCount(id)) !== 1; tries += 1) {
    assert.ok(tries < 100, "the ack over HTTP makes the delivery delivered");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});

test("the inbox API reads, marks and counts the history", async () => {
  const counts = await client.inbox.counts();
  assert.ok(counts.unread >= 1, JSON.stringify(counts));
  const page = await client.inbox.list({ state: "all", limit: 10 });
  assert.equal(page.items[0].message.body, "over long-poll");
  assert.equal(page.items[0].read, false);
  const change = await client.inbox.markRead(page.items[0].id);
  assert.deepEqual(change.changed, [{ id: page.items[0].id, seen: true, read: true, archived: false }]);
  const cleared = await client.inbox.markAllRead();
  assert.equal(cleared.counts.unread, 0);
  assert.equal((await client.inbox.list({ state: "unread" })).items.length, 0);
});

test("a refused call rejects with the problem naming the field", async () => {
  await assert.rejects(client.inbox.setState({ read: true }), (error) => {
    assert.equal(error.problem.status, 422);
    assert.equal(error.problem.field, "/");
    return true;
  });
  await assert.rejects(client.inbox.list({ state: "new" }), (error) => error.problem.field === "state");
});

test("the user's own preferences", async () => {
  const view = await client.preferences.get();
  assert.equal(view.user, env("SPRAYER_TEST_USER"));
  const set = await client.preferences.set({ channels: { sms: false } });
  assert.deepEqual(set.preferences, { channels: { sms: false } });
});
