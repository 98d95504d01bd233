// What the real-client suites share: the server's address and wait bound, quiet SDK logging, registration through
// user-interactive auth that waits out rate limits, waiting on a sync loop, and (for e2ee.test.mjs and
// federation.test.mjs) devices with Rust crypto whose failed requests are recorded and named in every failure.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { createClient, MatrixError, ClientEvent, MemoryStore } from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";

export const BASE_URL = (process.env.CONDUIT_URL ?? "http://127.0.0.1:6167").replace(/\/+$/, "");
export const WAIT_MS = Number(process.env.CONDUIT_WAIT_MS ?? 20_000);
export const PASSWORD = "correct horse battery staple " + randomBytes(4).toString("hex");

// ---- quiet SDK logging -------------------------------------------------------------------------

// The SDK's global logger is a loglevel logger named "matrix". Its child loggers (e.g. MatrixRTCSession's) force
// their own level to DEBUG but copy the parent's methodFactory, so filter in the factory: only warn and error
// reach the console.
if (typeof sdkLogger.methodFactory === "function") {
    const originalFactory = sdkLogger.methodFactory;
    sdkLogger.methodFactory = function (methodName, level, loggerName) {
        if (methodName !== "warn" && methodName !== "error") return () => {};
        return originalFactory.call(this, methodName, level, loggerName);
    };
}
sdkLogger.setLevel?.("warn");

/**
 * Logger passed to each client (and through it to the Rust crypto): drops trace/debug/info; keeps warn/error,
 * prefixed, each distinct message at most 3 times (a failing crypto request is retried on every sync).
 */
export function quietLogger(prefix, seen = new Map()) {
    const noop = () => {};
    // Errors as one line (no stack, no headers); the push-rule defaults the SDK adds are not worth a line.
    const flat = (x) => (x instanceof Error ? `${x.name}: ${x.message}` : typeof x === "string" ? x : JSON.stringify(x));
    const emit = (fn) => (...m) => {
        const line = m.map(flat).join(" ");
        if (/default global (override|underride) push rule/.test(line)) return;
        const key = line.slice(0, 200);
        const n = (seen.get(key) ?? 0) + 1;
        seen.set(key, n);
        if (n <= 3) fn(`[sdk ${prefix}] ${line}`);
    };
    return {
        trace: noop,
        debug: noop,
        info: noop,
        warn: emit(console.warn),
        error: emit(console.error),
        getChild: (ns) => quietLogger(`${prefix}:${ns}`, seen),
    };
}

// ---- helpers -----------------------------------------------------------------------------------

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function randomLocalpart(prefix) {
    return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}

export function describeError(e) {
    if (e instanceof MatrixError) {
        return `HTTP ${e.httpStatus} ${e.errcode ?? ""} ${e.data?.error ?? e.message}` +
            (e.url ? ` (${new URL(e.url).pathname})` : "");
    }
    return e?.stack ?? String(e);
}

const isRateLimited = (e) => e instanceof MatrixError && e.httpStatus === 429;

/**
 * Retries a request answered 429 M_LIMIT_EXCEEDED after retry_after_ms, for up to a minute: the default registration
 * limit (3 at once, then one per 6 s) is reached when the suites run again against the same server.
 */
export async function withRateLimitRetry(what, fn) {
    const deadline = Date.now() + 60_000;
    for (;;) {
        try {
            return await fn();
        } catch (e) {
            if (isRateLimited(e) && Date.now() < deadline) {
                const wait = Math.min(Math.max(Number(e.data?.retry_after_ms) || 1000, 200), 15_000);
                console.warn(`${what}: 429 ${e.errcode}, retrying in ${wait} ms`);
                await sleep(wait);
                continue;
            }
            throw e;
        }
    }
}

/**
 * Registers a user with user-interactive auth: the first call (no auth) must return 401 with a session and flows;
 * then a flow made only of m.login.dummy stages is completed. Rate-limited attempts are retried.
 */
export async function register(localpart, deviceName = "matrix-js-sdk test", baseUrl = BASE_URL) {
    const anon = createClient({ baseUrl, logger: quietLogger("anon") });
    const req = { username: localpart, password: PASSWORD, initial_device_display_name: deviceName };
    // Anything but a 429 (retried) or the expected 401 ends the registration with a readable error.
    const fail = (what, e) => (isRateLimited(e) ? e : new Error(`register ${localpart}: ${what} ${describeError(e)}`));
    return withRateLimitRetry(`register ${localpart}`, async () => {
        let uia;
        try {
            const res = await anon.registerRequest(req);
            // A server may skip UIA entirely; the spec allows it, but say so.
            console.warn(`register ${localpart}: server returned 200 without UIA`);
            return res;
        } catch (e) {
            if (!(e instanceof MatrixError) || e.httpStatus !== 401) throw fail("expected 401 UIA challenge, got", e);
            uia = e.data;
        }
        assert.ok(typeof uia?.session === "string" && uia.session.length > 0,
            `register: 401 response lacks a session: ${JSON.stringify(uia)}`);
        assert.ok(Array.isArray(uia.flows), `register: 401 response lacks flows: ${JSON.stringify(uia)}`);
        const flow = uia.flows.find((f) => Array.isArray(f.stages) && f.stages.every((s) => s === "m.login.dummy"));
        assert.ok(flow, `register: no flow made only of m.login.dummy stages: ${JSON.stringify(uia.flows)}`);

        const stages = flow.stages.length ? flow.stages : ["m.login.dummy"];
        let last;
        for (const stage of stages) {
            try {
                return await anon.registerRequest({ ...req, auth: { type: stage, session: uia.session } });
            } catch (e) {
                // Another stage may be needed (401 again with `completed`); anything else is fatal.
                if (!(e instanceof MatrixError) || e.httpStatus !== 401) throw fail(`completing ${stage} failed:`, e);
                last = e;
            }
        }
        throw new Error(`register ${localpart}: still 401 after completing all stages: ${describeError(last)}`);
    });
}

/** A client for registered credentials, with an in-memory store and quiet logging (no crypto). */
export function makeClient(creds, name) {
    return createClient({
        baseUrl: BASE_URL,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
        store: new MemoryStore(),
        logger: quietLogger(name),
    });
}

// ---- waiting on a client's sync loop ------------------------------------------------------------

/** Keeps the latest sync state/error of a client, for failure messages. */
export function trackSync(client, name) {
    const info = { name, state: null, error: null };
    client.on(ClientEvent.Sync, (state, _prev, data) => {
        info.state = state;
        if (data?.error) info.error = describeError(data.error);
    });
    return info;
}

/**
 * Resolves when predicate() becomes truthy, re-checking on every sync and every 100 ms.
 * Rejects after WAIT_MS with a message naming what we waited for and the client's sync state.
 */
export function waitUntil(client, syncInfo, what, predicate, ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
        let done = false;
        const check = () => {
            if (done) return;
            let v;
            try {
                v = predicate();
            } catch (e) {
                finish(e);
                return;
            }
            if (v) finish(null, v);
        };
        const onSync = () => check();
        const interval = setInterval(check, 100);
        const timer = setTimeout(() => {
            finish(new Error(
                `timed out after ${ms} ms waiting for: ${what} ` +
                `(${syncInfo.name}'s sync state: ${syncInfo.state ?? "never synced"}` +
                `${syncInfo.error ? `, last sync error: ${syncInfo.error}` : ""})`));
        }, ms);
        function finish(err, v) {
            done = true;
            clearInterval(interval);
            clearTimeout(timer);
            client.off(ClientEvent.Sync, onSync);
            err ? reject(err) : resolve(v);
        }
        client.on(ClientEvent.Sync, onSync);
        check();
    });
}

export async function startAndWaitPrepared(client, info) {
    await client.startClient({ initialSyncLimit: 20 });
    await waitUntil(client, info, `${info.name}'s initial sync (state PREPARED)`,
        () => client.isInitialSyncComplete());
}

// ---- reachability ------------------------------------------------------------------------------

/** Fails with a readable message unless `baseUrl` answers GET /_matrix/client/versions with a versions array. */
export async function assertReachable(baseUrl = BASE_URL, hint = "set CONDUIT_URL to point elsewhere") {
    try {
        const res = await fetch(`${baseUrl}/_matrix/client/versions`, { signal: AbortSignal.timeout(5000) });
        if (!res.ok) throw new Error(`GET /_matrix/client/versions returned HTTP ${res.status}`);
        const json = await res.json();
        if (!Array.isArray(json.versions)) throw new Error(`/versions has no "versions" array: ${JSON.stringify(json)}`);
    } catch (e) {
        throw new Error(`Homeserver not reachable at ${baseUrl} (${hint}): ${e?.cause?.code ?? ""} ${e?.message ?? e}`);
    }
}

// ---- E2EE devices ------------------------------------------------------------------------------
// What the E2EE suites (e2ee.test.mjs, federation.test.mjs) share: a device is a matrix-js-sdk client with Rust
// crypto whose fetch records the server's non-2xx answers; waits and SDK calls fail at once on an answer no working
// server gives, naming the request.

export const MEGOLM = "m.megolm.v1.aes-sha2";

/** Paths of the E2EE API: an answer that no working server gives on these fails the test at once. */
export const E2EE_PATH = /\/_matrix\/client\/(v3|r0|unstable)\/(keys\/|sendToDevice\/|room_keys\/)/;

/**
 * Records every non-2xx answer a client gets. `fatal` holds the ones that cannot be part of a working exchange:
 * on an E2EE path M_UNRECOGNIZED, 400, 403, 405, a 404 without a Matrix errcode, or any 5xx anywhere.
 */
export function makeRecorder(name) {
    return {
        name, failures: [], fatal: [], counts: new Map(), ignore: null, inflight: 0, lastKeysRequest: 0,
        // What the device's /sync responses carried, for timeout messages.
        sync: { responses: 0, toDevice: new Map(), changed: new Set(), left: new Set(), otkCounts: undefined, fallback: undefined },
    };
}

export function recordingFetch(rec) {
    return async (input, init) => {
        const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
        const method = (init?.method ?? (typeof input === "object" && input.method) ?? "GET").toUpperCase();
        const key = `${method} ${url.pathname.replace(/\/_matrix\/client\/v3/, "")}`;
        if (E2EE_PATH.test(url.pathname) || /\/sync$/.test(url.pathname)) {
            const short = key.replace(/(sendToDevice\/[^/]+)\/.*/, "$1");
            rec.counts.set(short, (rec.counts.get(short) ?? 0) + 1);
        }
        const isKeys = E2EE_PATH.test(url.pathname);
        if (isKeys) {
            rec.inflight++;
            rec.lastKeysRequest = Date.now();
        }
        let res;
        try {
            res = await fetch(input, init);
        } finally {
            if (isKeys) rec.inflight--;
        }
        if (res.ok && /\/sync$/.test(url.pathname)) {
            res.clone().json().then((body) => {
                const st = rec.sync;
                st.responses++;
                for (const e of body?.to_device?.events ?? []) st.toDevice.set(e.type, (st.toDevice.get(e.type) ?? 0) + 1);
                for (const u of body?.device_lists?.changed ?? []) st.changed.add(u);
                for (const u of body?.device_lists?.left ?? []) st.left.add(u);
                if (body?.device_one_time_keys_count) st.otkCounts = body.device_one_time_keys_count;
                if (body?.device_unused_fallback_key_types) st.fallback = body.device_unused_fallback_key_types;
            }, () => {});
        }
        if (!res.ok) {
            let body = null;
            try {
                body = await res.clone().json();
            } catch {
                // not JSON
            }
            const entry = {
                method,
                path: url.pathname + (url.search && !/access_token/.test(url.search) ? url.search : ""),
                status: res.status,
                errcode: body?.errcode,
                error: body?.error,
                at: new Date().toISOString().slice(11, 23),
            };
            rec.failures.push(entry);
            const e2ee = E2EE_PATH.test(url.pathname);
            const isFatal = res.status >= 500 ||
                (e2ee && (body?.errcode === "M_UNRECOGNIZED" || [400, 403, 405].includes(res.status) ||
                    (res.status === 404 && !body?.errcode)));
            if (isFatal && !(rec.ignore && rec.ignore.test(url.pathname))) rec.fatal.push(entry);
        }
        return res;
    };
}

export function fmtEntry(e) {
    return `${e.method} ${e.path} -> ${e.status} ${e.errcode ?? "(no errcode)"}${e.error ? ` "${e.error}"` : ""}`;
}

/** One line per distinct failed request (with a count), for failure messages. */
export function summarizeFailures(recs) {
    const lines = [];
    for (const rec of recs) {
        const grouped = new Map();
        for (const e of rec.failures) {
            const k = fmtEntry(e);
            grouped.set(k, (grouped.get(k) ?? 0) + 1);
        }
        for (const [k, n] of grouped) lines.push(`  [${rec.name}] ${k}${n > 1 ? ` (x${n})` : ""}`);
    }
    return lines.length ? `\nfailed requests seen:\n${lines.join("\n")}` : "\n(no failed requests seen)";
}

export function summarizeCounts(recs) {
    const lines = [];
    for (const r of recs) {
        lines.push(`  [${r.name}] ` + [...r.counts].map(([k, n]) => `${k} x${n}`).join(", "));
        const st = r.sync;
        lines.push(`  [${r.name}] its /sync responses (${st.responses}) carried: to_device ` +
            (st.toDevice.size ? [...st.toDevice].map(([t, n]) => `${t} x${n}`).join(", ") : "none") +
            `; device_lists.changed ${st.changed.size ? [...st.changed].join(" ") : "none"}` +
            (st.left.size ? `; device_lists.left ${[...st.left].join(" ")}` : "") +
            `; device_one_time_keys_count ${st.otkCounts === undefined ? "never" : JSON.stringify(st.otkCounts)}` +
            `; device_unused_fallback_key_types ${st.fallback === undefined ? "never" : JSON.stringify(st.fallback)}`);
    }
    return lines.join("\n");
}

/** Thrown for a fatal server answer; carries the request. */
export class ServerError extends Error {}

export function fatalError(recs, what) {
    for (const rec of recs) {
        if (rec.fatal.length) {
            const e = rec.fatal[0];
            return new ServerError(
                `${what}: the server answered ${rec.name}'s ${fmtEntry(e)}` + summarizeFailures(recs));
        }
    }
    return null;
}

/** A user's device: a started matrix-js-sdk client with Rust crypto, its recorder and sync state. */
export class Device {
    constructor(name, creds, { secretStorageKey, ignore, baseUrl = BASE_URL } = {}) {
        this.name = name;
        this.baseUrl = baseUrl;
        this.userId = creds.user_id;
        this.deviceId = creds.device_id;
        this.accessToken = creds.access_token;
        this.rec = makeRecorder(name);
        // Paths whose failures a test does not count as fatal (e.g. /room_keys/ where no backup is used).
        this.rec.ignore = ignore ?? null;
        this.sync = { state: null, error: null };
        // The secret storage key as the user would type it in: { keyId?, privateKey }, shared by a user's devices.
        this.ssKey = secretStorageKey ?? {};
        const ssKey = this.ssKey;
        this.client = createClient({
            baseUrl,
            userId: creds.user_id,
            accessToken: creds.access_token,
            deviceId: creds.device_id,
            store: new MemoryStore(),
            logger: quietLogger(name),
            fetchFn: recordingFetch(this.rec),
            cryptoCallbacks: {
                getSecretStorageKey: async ({ keys }) => {
                    if (!ssKey.privateKey) return null;
                    const keyId = ssKey.keyId && keys[ssKey.keyId] ? ssKey.keyId : Object.keys(keys)[0];
                    return [keyId, ssKey.privateKey];
                },
                cacheSecretStorageKey: (keyId, _info, privateKey) => {
                    ssKey.keyId = keyId;
                    ssKey.privateKey = privateKey;
                },
            },
        });
        this.client.on(ClientEvent.Sync, (state, _prev, data) => {
            this.sync.state = state;
            if (data?.error) this.sync.error = describeError(data.error);
        });
    }

    get crypto() {
        return this.client.getCrypto();
    }

    async start() {
        await this.client.initRustCrypto({ useIndexedDB: false });
        assert.ok(this.crypto, `${this.name}: initRustCrypto gave no CryptoApi`);
        await this.client.startClient({ initialSyncLimit: 30 });
        await waitFor([this], `${this.name}'s initial sync (state PREPARED)`, () => this.client.isInitialSyncComplete());
    }

    stop() {
        try {
            this.client.stopClient();
        } catch {
            // already stopped
        }
    }

    syncLine() {
        return `${this.name}'s sync state: ${this.sync.state ?? "never synced"}` +
            (this.sync.error ? `, last sync error: ${this.sync.error}` : "");
    }
}

/**
 * Resolves when predicate() (may be async) gives a truthy value, re-checking every 150 ms. Rejects at once when a
 * device's recorder holds a fatal server answer, and after `ms` with what we waited for, the sync states and the
 * failed requests seen.
 */
export async function waitFor(devices, what, predicate, ms = WAIT_MS) {
    const recs = devices.map((d) => d.rec);
    const deadline = Date.now() + ms;
    let lastErr = null;
    for (;;) {
        const fatal = fatalError(recs, `while waiting for ${what}`);
        if (fatal) throw fatal;
        try {
            const v = await predicate();
            if (v) return v;
        } catch (e) {
            lastErr = e;
        }
        if (Date.now() > deadline) {
            throw new Error(
                `timed out after ${ms} ms waiting for ${what}` +
                (lastErr ? ` (last check threw: ${describeError(lastErr)})` : "") +
                `\n  ${devices.map((d) => d.syncLine()).join("\n  ")}` +
                summarizeFailures(recs) + `\nE2EE requests made:\n${summarizeCounts(recs)}`);
        }
        await sleep(150);
    }
}

/** Awaits an SDK call, bounded by `ms`; a rejection or a fatal server answer becomes a message naming the step. */
export async function step(devices, what, fn, ms = WAIT_MS * 2) {
    const recs = devices.map((d) => d.rec);
    let timer;
    let poll;
    try {
        return await Promise.race([
            fn(),
            new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
                poll = setInterval(() => {
                    const f = fatalError(recs, what);
                    if (f) reject(f);
                }, 100);
            }),
        ]);
    } catch (e) {
        if (e instanceof ServerError) throw e;
        const f = fatalError(recs, what);
        if (f) throw f;
        throw new Error(`${what} failed: ${describeError(e)}` + summarizeFailures(recs), { cause: e });
    } finally {
        clearTimeout(timer);
        clearInterval(poll);
    }
}

/**
 * A raw client-server request with a user's token (no SDK in between), for checking what the server holds; to
 * `baseUrl` (default BASE_URL).
 */
export async function raw(token, method, path, body, baseUrl = BASE_URL) {
    const res = await fetch(`${baseUrl}/_matrix/client/v3${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(WAIT_MS),
    });
    let json = null;
    try {
        json = await res.json();
    } catch {
        // leave null
    }
    return { status: res.status, body: json, what: `${method} ${path} -> ${res.status} ${JSON.stringify(json)?.slice(0, 400)}` };
}

/** Signs in again with the password: a new device of the same user. */
export async function login(userId, displayName, baseUrl = BASE_URL) {
    const anon = createClient({ baseUrl, logger: quietLogger("anon") });
    try {
        return await withRateLimitRetry(`login ${userId}`, () => anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: userId },
            password: PASSWORD,
            initial_device_display_name: displayName,
        }));
    } catch (e) {
        throw new Error(`password login of ${userId} failed: ${describeError(e)}`);
    }
}

/**
 * The UIA callback for /keys/device_signing/upload: try without auth (a server may allow the first upload without
 * it), and on 401 complete m.login.password with the session from the challenge.
 */
export function passwordAuth(userId, used = {}) {
    return async (makeRequest) => {
        let challenge;
        try {
            return await makeRequest(null);
        } catch (e) {
            if (!(e instanceof MatrixError) || e.httpStatus !== 401 || !e.data?.flows) throw e;
            challenge = e.data;
        }
        used.challenged = true;
        const ok = challenge.flows.some((f) => f.stages?.length === 1 && f.stages[0] === "m.login.password");
        if (!ok) throw new Error(`/keys/device_signing/upload: UIA offers no m.login.password flow: ${JSON.stringify(challenge)}`);
        return await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: userId },
            password: PASSWORD,
            session: challenge.session,
        });
    };
}

/** Creates an encrypted private room (m.room.encryption in initial_state), inviting `invite`. */
export async function createEncryptedRoom(dev, invite = []) {
    const { room_id: roomId } = await step([dev], `${dev.name} creates an encrypted room`, () =>
        withRateLimitRetry("createRoom", () => dev.client.createRoom({
            name: `e2ee ${randomBytes(3).toString("hex")}`,
            preset: "private_chat",
            invite,
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
        })));
    assert.match(roomId, /^!.+/, "createRoom returned no room_id");
    await waitFor([dev], `${dev.name}'s crypto to see room ${roomId} as encrypted`,
        async () => dev.client.getRoom(roomId)?.getMyMembership() === "join" &&
            await dev.crypto.isEncryptionEnabledInRoom(roomId));
    return roomId;
}

export async function joinRoom(dev, roomId) {
    await waitFor([dev], `${dev.name} to see the invite to ${roomId}`,
        () => dev.client.getRoom(roomId)?.getMyMembership() === "invite");
    await step([dev], `${dev.name} joins ${roomId}`,
        () => withRateLimitRetry("join", () => dev.client.joinRoom(roomId)));
    await waitFor([dev], `${dev.name}'s sync to show it joined to ${roomId}`,
        () => dev.client.getRoom(roomId)?.getMyMembership() === "join");
    await waitFor([dev], `${dev.name}'s crypto to see ${roomId} as encrypted (m.room.encryption in the room's state)`,
        () => dev.crypto.isEncryptionEnabledInRoom(roomId));
}

/** Waits until `dev` sees `userId` joined in the room (the sender's crypto encrypts to joined members). */
export async function waitMemberJoined(dev, roomId, userId) {
    await waitFor([dev], `${dev.name} to see ${userId} joined in ${roomId}`,
        () => dev.client.getRoom(roomId)?.getMember(userId)?.membership === "join");
}

/** Waits until `dev`'s crypto knows the given device of `userId` (via /keys/query). */
export async function waitKnowsDevice(dev, userId, deviceId, others = []) {
    await waitFor([dev, ...others], `${dev.name}'s crypto to know device ${deviceId} of ${userId} (/keys/query)`,
        async () => (await dev.crypto.getUserDeviceInfo([userId], true)).get(userId)?.has(deviceId));
}

/**
 * Waits until each device's crypto knows the other's device (via /keys/query), then checks that `a` sees `b`'s
 * curve25519 and ed25519 keys as `b` published them.
 */
export async function waitKnowEachOther(a, b) {
    await waitKnowsDevice(a, b.userId, b.deviceId, [b]);
    await waitKnowsDevice(b, a.userId, a.deviceId, [a]);
    const bOnA = (await a.crypto.getUserDeviceInfo([b.userId], true)).get(b.userId).get(b.deviceId);
    const bOwn = await b.crypto.getOwnDeviceKeys();
    assert.equal(bOnA.getIdentityKey(), bOwn.curve25519, `${a.name} sees ${b.name}'s curve25519 key as ${b.name} published it`);
    assert.equal(bOnA.getFingerprint(), bOwn.ed25519, `${a.name} sees ${b.name}'s ed25519 key as ${b.name} published it`);
}

/** Sends an m.text message through the SDK (which encrypts it); returns the event id. */
export async function sendText(dev, roomId, body, others = []) {
    const res = await step([dev, ...others], `${dev.name} sends "${body}" to ${roomId}`,
        () => withRateLimitRetry("send", () => dev.client.sendTextMessage(roomId, body)), WAIT_MS * 3);
    assert.match(res.event_id ?? "", /^\$.+/, "send returned no event_id");
    return res.event_id;
}

/** The event as the server stores and serves it must be m.room.encrypted (Megolm), without the plaintext. */
export async function assertEncryptedOnWire(dev, roomId, eventId, plaintext) {
    const r = await raw(dev.accessToken, "GET",
        `/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`, undefined, dev.baseUrl);
    assert.equal(r.status, 200, `fetching the raw event: ${r.what}`);
    assert.equal(r.body.type, "m.room.encrypted", `event on the wire should be m.room.encrypted: ${r.what}`);
    assert.equal(r.body.content?.algorithm, MEGOLM, `wire event algorithm: ${r.what}`);
    assert.equal(typeof r.body.content?.ciphertext, "string", `wire event has no ciphertext: ${r.what}`);
    assert.equal(typeof r.body.content?.session_id, "string", `wire event has no session_id: ${r.what}`);
    assert.ok(!JSON.stringify(r.body).includes(plaintext), `the plaintext is visible on the wire: ${r.what}`);
}

export function decryptState(ev) {
    if (!ev) return "not in the room's timeline";
    if (ev.isBeingDecrypted()) return "being decrypted";
    if (ev.isDecryptionFailure()) return `decryption failure (${ev.decryptionFailureReason})`;
    return `type ${ev.getType()}, body ${JSON.stringify(ev.getContent()?.body)}`;
}

/**
 * Waits until `dev` has the event in the room's timeline, with wire type m.room.encrypted, decrypted to an
 * m.room.message with `body` from `senderId`.
 */
export async function waitDecrypted(dev, roomId, eventId, body, senderId, others = []) {
    let ev;
    try {
        await waitFor([dev, ...others], `${dev.name} to decrypt ${eventId} to "${body}"`, () => {
            ev = dev.client.getRoom(roomId)?.findEventById(eventId);
            return ev && !ev.isBeingDecrypted() && !ev.isDecryptionFailure() && ev.getType() === "m.room.message" &&
                ev.getContent()?.body === body;
        });
    } catch (e) {
        e.message += `\n  the event on ${dev.name}: ${decryptState(ev)}`;
        throw e;
    }
    assert.equal(ev.getWireType(), "m.room.encrypted", "the event arrived as m.room.encrypted");
    assert.ok(ev.isEncrypted(), "the event is marked encrypted");
    assert.equal(ev.getSender(), senderId);
    assert.equal(ev.getWireContent().algorithm, MEGOLM);
    return ev;
}

/** Sets up devices and stops them all at the end, whatever happens. */
export async function withDevices(fn) {
    const devices = [];
    try {
        await fn(devices);
    } finally {
        for (const d of devices) d.stop();
        // E2EE_VERBOSE=1: every test prints the failed requests and the E2EE traffic of its devices.
        if (process.env.E2EE_VERBOSE) {
            const recs = devices.map((d) => d.rec);
            console.log(`${summarizeFailures(recs)}\nE2EE requests made:\n${summarizeCounts(recs)}`.replace(/^/gm, "  "));
        }
    }
}

/** Device option for tests that use no key backup: failures on /room_keys/ are not fatal there. */
export const NO_BACKUP = { ignore: /\/room_keys\// };

export async function newDevice(devices, name, creds, opts) {
    const d = new Device(name, creds, opts);
    devices.push(d);
    await d.start();
    return d;
}
