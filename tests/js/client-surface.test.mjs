// Real-client tests of what a chat client shows besides messages: threads, reactions and edits as Element reads them
// (server-side aggregations and /relations), read receipts and typing through the SDK's sync loop, unread
// notification counts (the server's push rule evaluation) and their reset by a receipt, and a space with child rooms
// through the hierarchy API.
//
// Run with ./run.sh. Homeserver base URL: env CONDUIT_URL, default http://127.0.0.1:6167.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { RoomMemberEvent, RoomEvent, NotificationCountType } from "matrix-js-sdk";
import { BASE_URL, quietLogger, randomLocalpart, register, trackSync, waitUntil, startAndWaitPrepared, makeClient } from "./common.mjs";

let alice, bob, aliceSync, bobSync, roomId;

before(async () => {
    const a = await register(randomLocalpart("surface_a"));
    const b = await register(randomLocalpart("surface_b"));
    alice = makeClient(a, "alice");
    bob = makeClient(b, "bob");
    aliceSync = trackSync(alice, "alice");
    bobSync = trackSync(bob, "bob");
    ({ room_id: roomId } = await alice.createRoom({ name: "surface", preset: "public_chat" }));
    await bob.joinRoom(roomId);
    await Promise.all([startAndWaitPrepared(alice, aliceSync), startAndWaitPrepared(bob, bobSync)]);
});

after(() => {
    alice?.stopClient();
    bob?.stopClient();
});

test("a thread: replies are counted on the root and listed as its relations", async () => {
    const { event_id: root } = await alice.sendTextMessage(roomId, "thread root");
    await bob.sendMessage(roomId, root, { msgtype: "m.text", body: "first reply", "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } } });
    const { event_id: last } = await alice.sendMessage(roomId, root, { msgtype: "m.text", body: "second reply", "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } } });
    const ev = await bob.fetchRoomEvent(roomId, root);
    const thread = ev.unsigned?.["m.relations"]?.["m.thread"];
    assert.ok(thread, `no m.thread aggregation on the root: ${JSON.stringify(ev.unsigned)}`);
    assert.equal(thread.count, 2);
    assert.equal(thread.latest_event.event_id, last);
    assert.equal(thread.current_user_participated, true);
    const { events } = await bob.relations(roomId, root, "m.thread");
    assert.deepEqual(events.map((e) => e.getContent().body).sort(), ["first reply", "second reply"]);
});

test("a reaction and an edit, as Element reads them", async () => {
    const { event_id: msg } = await alice.sendTextMessage(roomId, "I like cake");
    await bob.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: msg, key: "👍" } });
    const reactions = await alice.relations(roomId, msg, "m.annotation", "m.reaction");
    assert.deepEqual(reactions.events.map((e) => e.getRelation()?.key), ["👍"]);

    const { event_id: edit } = await alice.sendMessage(roomId, {
        msgtype: "m.text", body: "* I like chocolate cake",
        "m.new_content": { msgtype: "m.text", body: "I like chocolate cake" },
        "m.relates_to": { rel_type: "m.replace", event_id: msg },
    });
    const ev = await bob.fetchRoomEvent(roomId, msg);
    const replace = ev.unsigned?.["m.relations"]?.["m.replace"];
    assert.equal(replace?.event_id, edit);
    assert.equal(replace?.content?.["m.new_content"]?.body, "I like chocolate cake");
    assert.equal(ev.content.body, "I like cake"); // the server leaves the original alone (spec v1.7+)
});

test("a read receipt and typing reach the other member's client", async () => {
    const { event_id } = await alice.sendTextMessage(roomId, "read me");
    const room = () => bob.getRoom(roomId);
    const event = await waitUntil(bob, bobSync, "bob's client to receive alice's message",
        () => room()?.findEventById(event_id));
    // Every m.receipt alice's client takes from its syncs. Under load the SDK sometimes takes the server's m.receipt
    // (bob's, on this event) and still leaves it out of getUsersReadUpTo: its own bookkeeping (synthesised receipts
    // and their ordering) drops it. What the server owes the client is the receipt in alice's sync, so either counts.
    const seen = [];
    const onReceipt = (ev, r) => { if (r?.roomId === roomId) seen.push(ev.getContent()); };
    const delivered = () => seen.some((c) => c?.[event_id]?.["m.read"]?.[bob.getUserId()]);
    alice.on(RoomEvent.Receipt, onReceipt);
    await bob.sendReadReceipt(event);
    try {
        await waitUntil(alice, aliceSync, "alice's client to see bob's read receipt on her message",
            () => delivered() || alice.getRoom(roomId)?.getUsersReadUpTo(alice.getRoom(roomId).findEventById(event_id) ?? event).includes(bob.getUserId()));
    } catch (e) {
        // What the server holds (a fresh sync of this room's ephemeral events) against what alice's client holds.
        const filter = JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 1 }, state: { types: [] } }, presence: { types: [] } });
        const fresh = await alice.http.authedRequest("GET", "/sync", { filter, timeout: "0" });
        const ephemeral = fresh.rooms?.join?.[roomId]?.ephemeral?.events;
        const own = alice.getRoom(roomId)?.getReceiptsForEvent(alice.getRoom(roomId).findEventById(event_id) ?? event);
        throw new Error(`${e.message}; the server's receipts for the room: ${JSON.stringify(ephemeral)}; alice's client's for ${event_id}: ${JSON.stringify(own)}; receipts alice's client took: ${JSON.stringify(seen)}; now ${new Date().toISOString()}`);
    } finally {
        alice.off(RoomEvent.Receipt, onReceipt);
    }

    const typing = new Promise((resolve) => bob.on(RoomMemberEvent.Typing, (_e, member) => {
        if (member.userId === alice.getUserId() && member.typing) resolve();
    }));
    await alice.sendTyping(roomId, true, 10_000);
    await Promise.race([typing, waitUntil(bob, bobSync, "bob's client to see alice typing",
        () => room()?.getMember(alice.getUserId())?.typing)]);
    await alice.sendTyping(roomId, false, 0);
    await waitUntil(bob, bobSync, "bob's client to see alice stop typing",
        () => room()?.getMember(alice.getUserId())?.typing === false);
});

test("unread counts as Element shows them: messages count, a mention highlights, a read receipt clears both", async () => {
    // A room of its own, so earlier tests' messages do not count.
    const { room_id: counted } = await alice.createRoom({ name: "counts", preset: "public_chat" });
    await bob.joinRoom(counted);
    const room = () => bob.getRoom(counted);
    const counts = () => [room()?.getUnreadNotificationCount(NotificationCountType.Total), room()?.getUnreadNotificationCount(NotificationCountType.Highlight)];
    await alice.sendTextMessage(counted, "one");
    const { event_id: mention } = await alice.sendMessage(counted, {
        msgtype: "m.text", body: "bob, look", "m.mentions": { user_ids: [bob.getUserId()] },
    });
    await waitUntil(bob, bobSync, "bob's client to count 2 unread, 1 highlighted", () => counts()[0] === 2 && counts()[1] === 1);
    // Alice sent them: nothing unread for her.
    assert.equal(alice.getRoom(counted)?.getUnreadNotificationCount(NotificationCountType.Total) ?? 0, 0);
    const event = await waitUntil(bob, bobSync, "bob's client to hold the mention", () => room()?.findEventById(mention));
    await bob.sendReadReceipt(event);
    await waitUntil(bob, bobSync, "bob's counts to clear after his read receipt", () => counts()[0] === 0 && counts()[1] === 0);
});

test("a space with child rooms, through the hierarchy API", async () => {
    const { room_id: space } = await alice.createRoom({ name: "A space", preset: "public_chat", creation_content: { type: "m.space" } });
    const { room_id: general } = await alice.createRoom({ name: "General", preset: "public_chat" });
    const { room_id: random } = await alice.createRoom({ name: "Random", preset: "public_chat" });
    const server = alice.getDomain();
    await alice.sendStateEvent(space, "m.space.child", { via: [server], order: "a" }, general);
    await alice.sendStateEvent(space, "m.space.child", { via: [server], order: "b" }, random);
    const hierarchy = await bob.getRoomHierarchy(space, 10, 3);
    assert.deepEqual(hierarchy.rooms.map((r) => r.name), ["A space", "General", "Random"]);
    assert.equal(hierarchy.rooms[0].room_type, "m.space");
    assert.equal(hierarchy.rooms[0].children_state.length, 2);
});
