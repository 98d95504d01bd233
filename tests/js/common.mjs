// What both real-client suites share: the server's address and wait bound, quiet SDK logging, and registration
// through user-interactive auth that waits out rate limits.

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
export async function register(localpart, deviceName = "matrix-js-sdk test") {
    const anon = createClient({ baseUrl: BASE_URL, logger: quietLogger("anon") });
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

