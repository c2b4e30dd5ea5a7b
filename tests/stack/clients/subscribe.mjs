// Subscribes to postNotify with the reference graphql-ws client and prints each notification as
// one JSON line; exits after COUNT notifications. Usage: node subscribe.mjs URL COUNT
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, count = "1"] = process.argv.slice(2);
let left = Number(count);
const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0 });
client.subscribe(
  { query: "subscription { postNotify { id title publishAt seq } }" },
  {
    next: (result) => {
      console.log(JSON.stringify(result));
      if (--left === 0) client.dispose().then(() => process.exit(0));
    },
    error: (err) => {
      console.error("subscription error:", err instanceof Error ? err.message : JSON.stringify(err));
      process.exit(2);
    },
    complete: () => process.exit(left === 0 ? 0 : 3),
  },
);
