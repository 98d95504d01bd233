// Real-client end-to-end encryption across two federating servers: matrix-js-sdk 43 with its Rust crypto, alice on
// server A and bob on server B. Exercises, besides the rooms federation (remote invite, join through the other
// server, events both ways), the E2EE federation: /keys/query and /keys/claim for the other server's users (answered
// by that server over federation), to-device room keys as m.direct_to_device EDUs, and device list changes as
// m.device_list_update EDUs.
//
// Run with ./federation.sh, which starts the two servers (HTTPS with a per-run CA that Node trusts through
// NODE_EXTRA_CA_CERTS) and sets CONDUIT_URL_A and CONDUIT_URL_B. CONDUIT_WAIT_MS bounds each wait.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import {
    WAIT_MS, randomLocalpart, register, assertReachable, waitFor, login, createEncryptedRoom, joinRoom,
    waitMemberJoined, waitKnowEachOther, sendText, assertEncryptedOnWire, waitDecrypted, withDevices, NO_BACKUP, newDevice,
} from "./common.mjs";

const A = process.env.CONDUIT_URL_A?.replace(/\/+$/, "");
const B = process.env.CONDUIT_URL_B?.replace(/\/+$/, "");
const TEST_TIMEOUT = Math.max(240_000, WAIT_MS * 12);

/** A new user on the server at `baseUrl` and its first device (a started client with Rust crypto). */
async function userOn(devices, baseUrl, prefix) {
    const creds = await register(randomLocalpart(prefix), `${prefix} device 1`, baseUrl);
    return newDevice(devices, prefix, creds, { ...NO_BACKUP, baseUrl });
}

const serverOf = (userId) => userId.slice(userId.indexOf(":") + 1);

/** alice (on A) creates an encrypted room and invites bob (on B); bob joins through A; both see each other joined. */
async function sharedEncryptedRoom(alice, bob) {
    const roomId = await createEncryptedRoom(alice, [bob.userId]);
    await joinRoom(bob, roomId);
    await waitMemberJoined(alice, roomId, bob.userId);
    await waitMemberJoined(bob, roomId, alice.userId);
    return roomId;
}

/**
 * `from` sends an encrypted text; every device in `to` decrypts it, and each receiver's server (which got it over
 * federation when it is the other server) serves it as m.room.encrypted without the plaintext.
 */
async function exchange(from, to, roomId, text) {
    const body = `${text} ${randomBytes(4).toString("hex")}`;
    const id = await sendText(from, roomId, body, to);
    for (const d of to) await waitDecrypted(d, roomId, id, body, from.userId, [from]);
    for (const d of to) await assertEncryptedOnWire(d, roomId, id, body);
    return id;
}

before(async () => {
    assert.ok(A && B, "CONDUIT_URL_A and CONDUIT_URL_B must name the two servers (run ./federation.sh)");
    await assertReachable(A, "CONDUIT_URL_A");
    await assertReachable(B, "CONDUIT_URL_B");
});

test("federation 1: alice on A and bob on B share an encrypted room and decrypt each other's messages", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const alice = await userOn(devices, A, "alice");
        const bob = await userOn(devices, B, "bob");
        assert.notEqual(serverOf(alice.userId), serverOf(bob.userId), "alice and bob should be on different servers");

        // Each server answers /keys/query for the other's user by asking that server (federation user/keys/query).
        await waitKnowEachOther(alice, bob);

        // Remote invite, join through A.
        const roomId = await sharedEncryptedRoom(alice, bob);

        // alice -> bob: alice's device claims a one-time key of bob's (federation user/keys/claim), sends the
        // Megolm session to it as an Olm to-device message (m.direct_to_device to B), then the event.
        await exchange(alice, [bob], roomId, "hello bob on the other server");
        assert.ok(bob.rec.sync.toDevice.get("m.room.encrypted") > 0,
            "bob's /sync should have carried alice's room key as an m.room.encrypted to-device event");
        // bob -> alice, then once more each way on the established sessions.
        await exchange(bob, [alice], roomId, "hi alice from B");
        assert.ok(alice.rec.sync.toDevice.get("m.room.encrypted") > 0,
            "alice's /sync should have carried bob's room key as an m.room.encrypted to-device event");
        await exchange(alice, [bob], roomId, "again to bob");
        await exchange(bob, [alice], roomId, "again to alice");
    }));

test("federation 2: bob's new device on B reaches alice's device on A as a device list update and gets her keys", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const alice = await userOn(devices, A, "alice");
        const bob = await userOn(devices, B, "bob");
        const roomId = await sharedEncryptedRoom(alice, bob);
        const early = await exchange(alice, [bob], roomId, "before bob's second device");

        // bob signs in again on B: B tells A (m.device_list_update), A lists bob in alice's device_lists.changed, and
        // alice's crypto queries his devices again.
        const bob2 = await newDevice(devices, "bob-2", await login(bob.userId, "bob device 2", B), { ...NO_BACKUP, baseUrl: B });
        await waitFor([alice, bob2], `alice's crypto to learn of bob's new device ${bob2.deviceId} ` +
            "(m.device_list_update to A, device_lists.changed in alice's /sync, then /keys/query)",
            async () => (await alice.crypto.getUserDeviceInfo([bob.userId])).get(bob.userId)?.has(bob2.deviceId));
        assert.ok(alice.rec.sync.changed.has(bob.userId), "alice's /sync should have listed bob in device_lists.changed");
        // The message from before it signed in stays undecryptable there (the SDK logs that as a warning).
        await waitFor([bob2], "bob-2's attempt to decrypt the message from before it signed in (which must fail)", () => {
            const ev = bob2.client.getRoom(roomId)?.findEventById(early);
            return ev && !ev.isBeingDecrypted() && ev.isDecryptionFailure();
        });

        // alice's next message is shared with both of bob's devices; bob's new device's reply decrypts for alice.
        await exchange(alice, [bob, bob2], roomId, "to both of bob's devices");
        await exchange(bob2, [alice, bob], roomId, "from bob's second device");
    }));
