// The benchmark's Node.js peer: a minimal WebSocket tier built the way the Node world builds it,
// on the reference graphql-ws server (`useServer` over `ws`), fed by Redis pub/sub (ioredis).
//
// It replaces only postwire's Daphne nodes. Publishes still go through postwire's gunicorn,
// which sends each event after commit with channels_redis's RedisPubSubChannelLayer (msgpack on
// channel `asgi__group__<POSTS_CHANNEL>`): one Redis SUBSCRIBE per process here, as postwire's
// hub has, then graphql-ws executes the operation and sends the result per subscriber, as that
// server does. Same subscription shape (`postNotify { id title publishAt seq }`, `serverNode`),
// same nginx in front, same pings every 20 s as Daphne's --ping-interval.
//
//   PORT=8001 POSTWIRE_NODE_NAME=ws-1 REDIS_URL=redis://127.0.0.1:6379/0 node server.mjs

import http from "node:http";
import { EventEmitter } from "node:events";
import { decode } from "@msgpack/msgpack";
import { buildSchema } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { Redis } from "ioredis";
import { WebSocketServer } from "ws";

const port = Number(process.env.PORT || 8001);
const nodeName = process.env.POSTWIRE_NODE_NAME || "node-peer";
const group = `asgi__group__${process.env.POSTS_CHANNEL || "posts_notifications"}`;
const pingMs = Number(process.env.PING_INTERVAL_SECONDS || 20) * 1000;

const schema = buildSchema(`
  type PostNotification { id: ID! title: String! publishAt: String seq: Int! }
  type Query { serverNode: String! }
  type Subscription { postNotify(after: Int): PostNotification! serverNode: String! }
`);

// One Redis subscription per process; every local subscriber listens on this emitter.
const events = new EventEmitter();
events.setMaxListeners(0);
const redis = new Redis(process.env.REDIS_URL || "redis://127.0.0.1:6379/0");
redis.subscribe(group);
redis.on("messageBuffer", (_channel, payload) => {
  const m = decode(payload);
  if (m.kind !== "published") return;
  events.emit("post", {
    // strawberry's relay GlobalID: base64("PostNotification:<uuid>")
    id: Buffer.from(`PostNotification:${m.post_id}`).toString("base64"),
    title: m.title,
    publishAt: m.published_at,
    seq: m.seq,
  });
});

// An async iterator over the emitter, with an unbounded queue like graphql-ws's usual pubsub helpers.
function listen() {
  const queue = [];
  let wake = null;
  const push = (event) => {
    if (wake) { const w = wake; wake = null; w({ value: event, done: false }); } else queue.push(event);
  };
  events.on("post", push);
  return {
    [Symbol.asyncIterator]() { return this; },
    next() {
      if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
      return new Promise((resolve) => { wake = resolve; });
    },
    return() {
      events.off("post", push);
      if (wake) wake({ value: undefined, done: true });
      return Promise.resolve({ value: undefined, done: true });
    },
  };
}

async function* once(value) { yield value; }

// buildSchema gives no field functions: attach the subscriptions' subscribe/resolve.
const subscriptionFields = schema.getSubscriptionType().getFields();
subscriptionFields.postNotify.subscribe = () => listen();
subscriptionFields.postNotify.resolve = (event) => event;
subscriptionFields.serverNode.subscribe = () => once(nodeName);
subscriptionFields.serverNode.resolve = (name) => name;

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") { res.writeHead(200, { "Content-Type": "text/plain" }); res.end("ok"); return; }
  res.writeHead(404); res.end();
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
useServer({ schema, roots: { query: { serverNode: nodeName } } }, wss);

// Keep-alive pings, as Daphne does; a socket that missed the previous pong is dropped.
setInterval(() => {
  for (const ws of wss.clients) {
    if (ws.pendingPong) { ws.terminate(); continue; }
    ws.pendingPong = true;
    ws.ping();
  }
}, pingMs).unref();
wss.on("connection", (ws) => ws.on("pong", () => { ws.pendingPong = false; }));

server.listen(port, "127.0.0.1", () => console.log(`node peer ${nodeName} on ${port}, Redis channel ${group}`));
