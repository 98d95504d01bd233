// A real bridge against the server: matrix-appservice-bridge (the framework most Matrix bridges are built on, with
// matrix-bot-sdk's Appservice inside it), run by ../appservice.sh, which starts the server. The bridge relays what a
// Matrix user says in a room its bot is in by making a puppet of that user in its namespace (@remote_<localpart>)
// say it back, as a bridge to another network would.
//
// The start follows a real deployment: the bridge listens first (127.0.0.1, a port the system gives), the
// framework's AppServiceRegistration writes the registration YAML with that url, appservice.sh starts the server with
// the file in app_service_config_files and hands its URL back (APPSERVICE_WORK/server-url); then the Bridge is made
// from the same YAML file and runs on the listener already bound.

import assert from "node:assert/strict";
import { existsSync, readFileSync, renameSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";

import { AppService, AppServiceRegistration, Bridge, Logger } from "matrix-appservice-bridge";

const WORK = process.env.APPSERVICE_WORK;
if (!WORK) throw new Error("APPSERVICE_WORK is not set: run this file through tests/js/appservice.sh, which starts the server");
const SERVER_NAME = process.env.APPSERVICE_SERVER_NAME ?? "appservice.test";
const escapeRegex = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const PREFIX = "remote_";
const BOT_LOCALPART = "bridgebot";
const BOT_ID = `@${BOT_LOCALPART}:${SERVER_NAME}`;
const YAML = path.join(WORK, "registration.yaml");

Logger.configure({ console: process.env.APPSERVICE_LOG ?? "off" });

/**
 * The bridge's HTTP listener: the framework's AppService (its express app serves the appservice API) on a server of
 * our own, so that it can be bound before the Bridge exists, closed and bound again on the same port (the bridge
 * going down and coming back), and made to answer transactions 500. Every transaction PUT is recorded.
 */
class TestAppService extends AppService {
    fail = null;    // { remaining, match(events) }: that many transaction PUTs whose events match are answered 500
    attempts = [];  // { txnId, eventIds, status, authorization, queryToken } per transaction PUT, in arrival order
    port = 0;

    async listen(port, hostname) {
        if (this.server?.listening) return; // bound before the Bridge was made; Bridge.run() calls this again
        const server = http.createServer((req, res) => this.handle(req, res));
        await new Promise((resolve, reject) => {
            server.once("error", reject);
            server.listen(port, hostname, () => { server.off("error", reject); resolve(); });
        });
        this.server = server;
        this.port = server.address().port;
    }

    async close() {
        const server = this.server;
        if (!server) return;
        this.server = undefined;
        await new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
    }

    handle(req, res) {
        const m = req.method === "PUT" && /^\/_matrix\/app\/v1\/transactions\/([^/?]+)/.exec(req.url);
        if (!m) return this.expressApp(req, res);
        const attempt = {
            txnId: decodeURIComponent(m[1]), eventIds: [], status: 0, authorization: req.headers.authorization,
            queryToken: new URL(req.url, "http://x").searchParams.has("access_token"),
        };
        this.attempts.push(attempt);
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            let body;
            try { body = JSON.parse(Buffer.concat(chunks).toString()); } catch { body = undefined; }
            const events = Array.isArray(body?.events) ? body.events : [];
            attempt.eventIds = events.map((e) => e.event_id);
            if (this.fail?.remaining > 0 && this.fail.match(events)) {
                this.fail.remaining--;
                attempt.status = 500;
                res.writeHead(500, { "content-type": "application/json" });
                res.end(JSON.stringify({ errcode: "M_UNKNOWN", error: "the bridge fails this transaction on purpose" }));
                return;
            }
            res.on("finish", () => { attempt.status = res.statusCode; });
            // Already read: the express app's JSON body parser skips a request marked parsed.
            req.body = body;
            req._body = true;
            this.expressApp(req, res);
        });
    }
}

// ---- waiting without a sync loop ------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, predicate, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
        const v = await predicate();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
        await sleep(50);
    }
}

// ---- the start: listener, registration, server -------------------------------------------------

const hsToken = AppServiceRegistration.generateToken();
const asToken = AppServiceRegistration.generateToken();
const appservice = new TestAppService({ homeserverToken: hsToken });
await appservice.listen(0, "127.0.0.1");

const registration = new AppServiceRegistration(`http://127.0.0.1:${appservice.port}`);
registration.setId("js-bridge");
registration.setHomeserverToken(hsToken);
registration.setAppServiceToken(asToken);
registration.setSenderLocalpart(BOT_LOCALPART);
registration.setRateLimited(false);
registration.addRegexPattern("users", `@${PREFIX}.*:${escapeRegex(SERVER_NAME)}`, true);
registration.outputAsYaml(`${YAML}.tmp`);
renameSync(`${YAML}.tmp`, YAML); // appservice.sh starts the server once the whole file is there

const serverUrl = await until("the server's URL from appservice.sh", () => {
    if (existsSync(path.join(WORK, "server-failed"))) {
        throw new Error(`appservice.sh: ${readFileSync(path.join(WORK, "server-failed"), "utf8").trim()} (its log follows the tests)`);
    }
    return existsSync(path.join(WORK, "server-url")) && readFileSync(path.join(WORK, "server-url"), "utf8").trim();
}, 240_000);
process.env.CONDUIT_URL = serverUrl;
// common.mjs reads CONDUIT_URL when loaded.
const { register, makeClient, trackSync, waitUntil, startAndWaitPrepared, randomLocalpart, describeError, WAIT_MS } =
    await import("../common.mjs");
const { EventType } = await import("matrix-js-sdk");

// What the bridge's controller was handed (after the framework's echo suppression: nothing from its own users), in
// order, and what its relaying did.
const seen = [];
const relayErrors = [];
const relayed = new Map(); // event id of the user's message -> event id of the puppet's
let relaying = true;

const puppetOf = (userId) => `@${PREFIX}${userId.slice(1).split(":")[0]}:${SERVER_NAME}`;

const bridge = new Bridge({
    homeserverUrl: serverUrl,
    domain: SERVER_NAME,
    registration: YAML, // the framework reads the file the server read
    disableStores: true,
    controller: {
        onEvent: async (request) => {
            const ev = request.getData();
            seen.push(ev);
            try {
                if (ev.type === "m.room.member" && ev.state_key === BOT_ID && ev.content?.membership === "invite") {
                    await bridge.getIntent().join(ev.room_id);
                } else if (ev.type === "m.room.message" && relaying) {
                    const sent = await bridge.getIntent(puppetOf(ev.sender)).sendText(ev.room_id, `${ev.content.body} (relayed)`);
                    relayed.set(ev.event_id, sent.event_id);
                }
                request.resolve();
            } catch (e) {
                relayErrors.push(`${ev.event_id} (${ev.type}): ${e?.body?.errcode ?? ""} ${e?.message ?? e}`);
                request.reject(e);
            }
        },
    },
});
await bridge.run(appservice.port, appservice, "127.0.0.1");

// ---- the Matrix side: alice, with matrix-js-sdk and its sync loop ---------------------------------

let alice, aliceClient, aliceSync;

before(async () => {
    alice = await register(randomLocalpart("alice"));
    aliceClient = makeClient(alice, "alice");
    aliceSync = trackSync(aliceClient, "alice");
    await startAndWaitPrepared(aliceClient, aliceSync);
}, { timeout: 120_000 });

after(async () => {
    aliceClient?.stopClient();
    await bridge.close().catch(() => {});
});

/** Alice's private room with the bridge's bot invited. */
async function roomWithBot(name) {
    const { room_id: roomId } = await aliceClient.createRoom({ name, preset: "private_chat", invite: [BOT_ID] });
    return roomId;
}

/** The text messages alice's client shows in a room, as [sender, body], in timeline order. */
function timelineTexts(roomId) {
    const room = aliceClient.getRoom(roomId);
    return (room?.getLiveTimeline().getEvents() ?? [])
        .filter((e) => e.getType() === EventType.RoomMessage)
        .map((e) => [e.getSender(), e.getContent().body]);
}

function waitSees(roomId, sender, body) {
    return waitUntil(aliceClient, aliceSync, `alice's client shows ${sender}: "${body}" in ${roomId}`,
        () => timelineTexts(roomId).some(([s, b]) => s === sender && b === body));
}

/** Messages from alice that the bridge's controller was handed in the room, by body, in order. */
const bodiesSeen = (roomId) => seen.filter((e) => e.room_id === roomId && e.type === "m.room.message" &&
    e.sender === alice.user_id).map((e) => e.content.body);

const failureContext = () => `\n  bridge's relay errors: ${JSON.stringify(relayErrors)}` +
    `\n  transaction PUTs: ${JSON.stringify(appservice.attempts.map(({ txnId, eventIds, status }) => ({ txnId, events: eventIds.length, status })))}`;

// ---- tests -----------------------------------------------------------------------------------------

test("appservice 1: the registration the framework wrote is the server's: its as_token is its bot", async () => {
    const whoami = await bridge.getIntent().matrixClient.getWhoAmI();
    assert.equal(whoami.user_id, BOT_ID);
    const yaml = readFileSync(YAML, "utf8");
    assert.match(yaml, new RegExp(`url: http://127\\.0\\.0\\.1:${appservice.port}`));
});

test("appservice 2: the bridge registers a puppet in its namespace and speaks as it; alice's client sees it", async () => {
    const roomId = await roomWithBot("puppet room");
    // The bot joins on its own; no transaction needed for this test.
    await bridge.getIntent().join(roomId);
    const puppetId = `@${PREFIX}${randomLocalpart("ghost")}:${SERVER_NAME}`;
    const puppet = bridge.getIntent(puppetId);
    // sendText registers the puppet (m.login.application_service), has the bot invite it, joins and sends.
    const { event_id: eventId } = await puppet.sendText(roomId, "hello from the other network");
    assert.match(eventId, /^\$/);
    assert.equal((await puppet.matrixClient.getWhoAmI()).user_id, puppetId);
    await waitSees(roomId, puppetId, "hello from the other network");
    const ev = aliceClient.getRoom(roomId).findEventById(eventId);
    assert.ok(ev, `alice's timeline lacks ${eventId}`);
    assert.equal(ev.getSender(), puppetId);
    // The puppet is a user like any other: it has a profile (made at registration).
    const profile = await aliceClient.getProfileInfo(puppetId);
    assert.ok(profile && typeof profile === "object");
});

test("appservice 3: outside its namespace the bridge is refused, and its namespace is closed to others", async () => {
    const roomId = await roomWithBot("refusals");
    await bridge.getIntent().join(roomId);
    // Registering a user outside its namespace: 400 M_EXCLUSIVE.
    const outsider = bridge.getIntent(`@${randomLocalpart("outsider")}:${SERVER_NAME}`);
    await assert.rejects(outsider.sendText(roomId, "should not be sent"), (e) => {
        assert.equal(e?.body?.errcode, "M_EXCLUSIVE", `expected M_EXCLUSIVE, got ${e?.statusCode} ${JSON.stringify(e?.body) ?? e}`);
        assert.equal(e.statusCode, 400);
        return true;
    });
    // Acting as a real user outside its namespace (the as_token with ?user_id=alice): 403 M_FORBIDDEN.
    await assert.rejects(bridge.getIntent(alice.user_id).matrixClient.sendText(roomId, "as alice, should not be sent"), (e) => {
        assert.equal(e?.body?.errcode, "M_FORBIDDEN", `expected M_FORBIDDEN, got ${e?.statusCode} ${JSON.stringify(e?.body) ?? e}`);
        assert.equal(e.statusCode, 403);
        return true;
    });
    // An ordinary registration of a name in its exclusive namespace: 400 M_EXCLUSIVE.
    await assert.rejects(register(`${PREFIX}${randomLocalpart("squatter")}`), /M_EXCLUSIVE/);
    // Neither refused message was sent.
    const room = aliceClient.getRoom(roomId);
    await sleep(500);
    assert.ok(!timelineTexts(roomId).some(([, b]) => /should not be sent/.test(b)), JSON.stringify(timelineTexts(roomId)));
    assert.ok(room);
});

let relayRoom;

test("appservice 4: the bridge gets a message in a transaction and relays it as the sender's puppet", async () => {
    relayRoom = await roomWithBot("relay room");
    // The bot's invite reaches the bridge in a transaction; its controller joins the room.
    await waitUntil(aliceClient, aliceSync, `the bridge's bot joins ${relayRoom} on its invite${failureContext()}`,
        () => aliceClient.getRoom(relayRoom)?.getMember(BOT_ID)?.membership === "join");
    const invite = seen.find((e) => e.room_id === relayRoom && e.type === "m.room.member" && e.state_key === BOT_ID);
    assert.equal(invite.content.membership, "invite");
    assert.equal(invite.sender, alice.user_id);

    const { event_id: eventId } = await aliceClient.sendTextMessage(relayRoom, "hello bridge");
    const puppetId = puppetOf(alice.user_id);
    await waitSees(relayRoom, puppetId, "hello bridge (relayed)").catch((e) => { throw new Error(e.message + failureContext()); });

    // The event as the bridge got it: client format.
    const ev = seen.find((e) => e.event_id === eventId);
    assert.ok(ev, `the bridge never got ${eventId}`);
    assert.equal(ev.type, "m.room.message");
    assert.equal(ev.room_id, relayRoom);
    assert.equal(ev.sender, alice.user_id);
    assert.deepEqual(ev.content, { msgtype: "m.text", body: "hello bridge" });
    assert.equal(typeof ev.origin_server_ts, "number");
    assert.ok(relayed.has(eventId));
    // Transactions carry the hs_token in the Authorization header, not in the query string.
    const ok = appservice.attempts.filter((a) => a.status === 200);
    assert.ok(ok.length > 0);
    for (const a of appservice.attempts) {
        assert.equal(a.authorization, `Bearer ${hsToken}`);
        assert.equal(a.queryToken, false);
    }
    // The puppet's own message is not sent back to the bridge: the framework drops it, but the transaction brought it
    // (the room has a member of the namespace), or not at all; either way the relay ran once.
    assert.equal([...relayed.keys()].filter((k) => k === eventId).length, 1);
    assert.deepEqual(relayErrors, []);
});

test("appservice 5: transactions that failed while the bridge was down arrive after it comes back, in order", { timeout: 180_000 }, async () => {
    assert.ok(relayRoom, "needs test 4's room");
    const before = appservice.attempts.length;
    await appservice.close();
    const bodies = ["while down 1", "while down 2", "while down 3"];
    const ids = [];
    for (const b of bodies) ids.push((await aliceClient.sendTextMessage(relayRoom, b)).event_id);
    // Long enough for the server to have tried and failed (connection refused) at least twice: it retries after
    // about 2 s, then doubles the wait.
    await sleep(5_000);
    assert.deepEqual(bodiesSeen(relayRoom).filter((b) => bodies.includes(b)), [], "the bridge got events while its listener was closed");
    assert.equal(appservice.attempts.length, before, "a transaction reached a closed listener");

    // Back on the same port (the registration's url); retried briefly if another socket took it meanwhile.
    const up = Date.now();
    for (;;) {
        try { await appservice.listen(appservice.port, "127.0.0.1"); break; } catch (e) {
            if (e?.code !== "EADDRINUSE" || Date.now() - up > 10_000) throw e;
            await sleep(200);
        }
    }
    await until(`the three messages sent while the bridge was down reach it${failureContext()}`,
        () => bodies.every((b) => bodiesSeen(relayRoom).includes(b)), 90_000);
    const arrived = seen.filter((e) => ids.includes(e.event_id)).map((e) => e.event_id);
    assert.deepEqual(arrived, ids, "each exactly once, in the order sent");
    // And in order after the message before them.
    const all = bodiesSeen(relayRoom);
    assert.deepEqual(all, ["hello bridge", ...bodies]);
    for (const b of bodies) await waitSees(relayRoom, puppetOf(alice.user_id), `${b} (relayed)`);
    console.log(`back after ${((Date.now() - up) / 1000).toFixed(1)} s`);
});

test("appservice 6: a transaction answered 500 is retried with the same id and events, then the next in order", { timeout: 180_000 }, async () => {
    assert.ok(relayRoom, "needs test 4's room");
    const from = appservice.attempts.length;
    const bodies = ["after 500 1", "after 500 2"];
    // The first two PUTs that carry either message fail (not one that carries only, say, a puppet's message).
    appservice.fail = { remaining: 2, match: (events) => events.some((e) => bodies.includes(e.content?.body)) };
    const ids = [];
    for (const b of bodies) ids.push((await aliceClient.sendTextMessage(relayRoom, b)).event_id);
    await until(`the two messages reach the bridge after two 500s${failureContext()}`,
        () => bodies.every((b) => bodiesSeen(relayRoom).includes(b)), 90_000);
    const attempts = appservice.attempts.slice(from).filter((a) => a.eventIds.some((id) => ids.includes(id)));
    const failed = attempts.filter((a) => a.status === 500);
    assert.equal(failed.length, 2, JSON.stringify(attempts));
    // A failed transaction is sent again as it was (same id, same events) until it succeeds.
    const [first] = failed;
    assert.ok(first.eventIds.includes(ids[0]), `the first failed transaction lacks the first message: ${JSON.stringify(attempts)}`);
    for (const a of failed) {
        assert.equal(a.txnId, first.txnId, JSON.stringify(attempts));
        assert.deepEqual(a.eventIds, first.eventIds);
    }
    const success = attempts.find((a) => a.status === 200);
    assert.equal(success.txnId, first.txnId, JSON.stringify(attempts));
    assert.deepEqual(success.eventIds, first.eventIds);
    // Each event once, in order; the transaction ids of the successful ones are distinct.
    assert.deepEqual(seen.filter((e) => ids.includes(e.event_id)).map((e) => e.event_id), ids);
    const okIds = appservice.attempts.filter((a) => a.status === 200).map((a) => a.txnId);
    assert.equal(new Set(okIds).size, okIds.length, `a transaction id was used twice: ${okIds}`);
    assert.deepEqual(bodiesSeen(relayRoom).slice(-2), bodies);
    for (const b of bodies) await waitSees(relayRoom, puppetOf(alice.user_id), `${b} (relayed)`);
    assert.deepEqual(relayErrors, []);
});
