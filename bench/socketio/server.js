// A minimal socket.io 4 broadcast server with its Redis adapter, the peer of Sprayer's socket
// benchmark: every client joins the default namespace; POST /broadcast emits one message to all
// of them through the adapter (Redis pub/sub), as a multi-node socket.io installation does.
// Usage: node server.js <redis url>   prints "LISTENING <port>".
const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const redisUrl = process.argv[2] || "redis://127.0.0.1:6379";
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((request, response) => {
    if (request.method === "POST" && request.url === "/broadcast") {
      io.emit("message", { title: "bench", body: "one message to every socket", at: Date.now() });
      response.writeHead(202).end();
      return;
    }
    if (!request.url.startsWith("/socket.io/")) response.writeHead(404).end();
  });
  const io = new Server(server, { transports: ["websocket"], adapter: createAdapter(pub, sub) });
  server.listen(0, "127.0.0.1", () => console.log(`LISTENING ${server.address().port}`));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
