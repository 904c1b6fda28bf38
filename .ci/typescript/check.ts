// Type-checks liweb.d.ts against the chat example's generated event maps:
// `tsc --noEmit -p .ci/typescript` (run by .ci/run).
//
// A line marked `@ts-expect-error` must fail to type-check: if a change
// made it valid (a wrong emit accepted), tsc reports "Unused
// '@ts-expect-error' directive" and the check fails.

import { LiwebClient } from "../../liweb/js/liweb.js";
import type { ChatIn, ChatOut, Message } from "../../examples/chat/static/chat-events";

const client = new LiwebClient<ChatIn, ChatOut>("/ws", { auth: () => ({ secret: "s" }) });

// Correct emits.
client.emit("chat:message", { text: "hello" });
client.emit("chat:message", { text: "hello", room: "rust" });
client.emitSticky("join", { room: "rust" }, "room:rust");

// A payload of the wrong shape (`text` must be a string).
// @ts-expect-error
client.emit("chat:message", { text: 42 });

// An event the server does not take (`welcome` is server → client).
// @ts-expect-error
client.emit("welcome", { id: "x", online: 1, name: "n" });

// A missing payload for an event that needs one.
// @ts-expect-error
client.emit("join");

// Listeners get the payload type of the event.
client.on("chat:message", (message: Message) => {
  const when: number = message.ts;
  const room: string = message.room;
  void [when, room];
});
client.on("user:left", ({ room, online, name }) => {
  const where: string | undefined = room;
  void [where, online.toFixed(), name.toUpperCase()];
});
client.on("auth:error", ({ reason }) => void reason.length);
client.on("close", ({ code, willReconnect, authFailed }) => void [code, willReconnect, authFailed]);
client.onReconnect(() => client.emit("typing", { room: "rust" }));

// @ts-expect-error: no such event from the server
client.on("chat:mesage", () => {});

// Untyped clients take any name and payload.
const loose = new LiwebClient("/ws");
loose.emit("anything", { at: 1 });
loose.emit("ping");
