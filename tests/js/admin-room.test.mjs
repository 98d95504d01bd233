// The admin room through matrix-js-sdk, as a server admin uses it from a client: the server's first account is
// invited into #admins:<server> by the bot @conduit, joins it, types a command and sees the bot's formatted reply.
// Runs first in run.sh, so that on a fresh server its user is the first account (the server admin). Against a server
// that already has accounts the user is no admin; the test then only checks that the room exists and is the bot's.

import { test, before } from "node:test";
import assert from "node:assert/strict";

import { RoomEvent } from "matrix-js-sdk";
import { BASE_URL, WAIT_MS, randomLocalpart, register, trackSync, waitUntil, startAndWaitPrepared, makeClient, assertReachable, raw } from "./common.mjs";

before(async () => {
    await assertReachable();
});

test("the first account is invited into the admin room and the bot answers its command", async (t) => {
    const creds = await register(randomLocalpart("admin"));
    const server = creds.user_id.slice(creds.user_id.indexOf(":") + 1);
    const bot = `@conduit:${server}`;
    const alias = `#admins:${server}`;

    // The room exists (made at the server's first start) and is the bot's.
    let roomId;
    const deadline = Date.now() + WAIT_MS;
    while (!roomId) {
        const r = await raw(creds.access_token, "GET", `/directory/room/${encodeURIComponent(alias)}`);
        if (r.status === 200) roomId = r.body.room_id;
        else if (Date.now() > deadline) assert.fail(`no admin room: ${r.what}`);
        else await new Promise((res) => setTimeout(res, 100));
    }
    const admin = await fetch(`${BASE_URL}/_synapse/admin/v1/users/${encodeURIComponent(creds.user_id)}/admin`, {
        headers: { Authorization: `Bearer ${creds.access_token}` },
        signal: AbortSignal.timeout(WAIT_MS),
    });
    if (admin.status !== 200 || (await admin.json())?.admin !== true) {
        t.skip("this server already had accounts: the test's user is not its admin");
        return;
    }

    const client = makeClient(creds, "admin");
    const info = trackSync(client, "admin");
    const replies = [];
    client.on(RoomEvent.Timeline, (event, room, toStart) => {
        if (!toStart && room?.roomId === roomId && event.getSender() === bot && event.getType() === "m.room.message") replies.push(event);
    });
    try {
        await startAndWaitPrepared(client, info);
        await waitUntil(client, info, "the bot's invite into the admin room", () => client.getRoom(roomId)?.getMyMembership() === "invite");
        await client.joinRoom(roomId);
        await waitUntil(client, info, "joined the admin room", () => client.getRoom(roomId)?.getMyMembership() === "join");
        const sent = await client.sendTextMessage(roomId, "!admin users list");
        const reply = await waitUntil(client, info, "the bot's reply to !admin users list", () =>
            replies.find((e) => e.getContent()["m.relates_to"]?.["m.in_reply_to"]?.event_id === sent.event_id));
        const content = reply.getContent();
        assert.equal(content.msgtype, "m.notice");
        assert.ok(content.body.includes(creds.user_id), content.body);
        assert.equal(content.format, "org.matrix.custom.html");
        assert.ok(content.formatted_body.includes("<table>"), content.formatted_body);
    } finally {
        client.stopClient();
    }
});
