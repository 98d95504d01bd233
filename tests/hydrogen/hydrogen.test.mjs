// Hydrogen, a real Matrix web client (hydrogen-view-sdk's whole app), in headless Chromium against the homeserver at
// CONDUIT_URL: bob signs in through Hydrogen's login screen, opens a room from its room list, sees alice's messages
// (one sent before he signed in, one while the room is open) and sends one through the composer, which the server
// must then hold. alice is driven over plain HTTP. A screenshot of the page is kept whatever the outcome.
//
//   CONDUIT_URL          homeserver (default http://127.0.0.1:6167)
//   HYDROGEN_WAIT_MS     bound on each wait for the page or the server (default 60000)
//   HYDROGEN_SCREENSHOT  where the screenshot goes (default $HYDROGEN_WORK_DIR/hydrogen.png)
//   HYDROGEN_WORK_DIR    work directory (default a new one under the system's temp dir)
//   CHROMIUM             the browser (default /usr/bin/chromium, Debian's chromium package)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

import { chromium } from "playwright-core";

import { serveHydrogen } from "./serve.mjs";

const BASE_URL = (process.env.CONDUIT_URL ?? "http://127.0.0.1:6167").replace(/\/+$/, "");
const WAIT_MS = Number(process.env.HYDROGEN_WAIT_MS ?? 60_000);
// The work directory holds only the default screenshot, so none is made when the screenshot goes elsewhere.
const SCREENSHOT = process.env.HYDROGEN_SCREENSHOT
    || join(process.env.HYDROGEN_WORK_DIR || mkdtempSync(join(tmpdir(), "conduit-hydrogen-")), "hydrogen.png");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PASSWORD = "correct horse battery staple " + randomBytes(4).toString("hex");
const run = `${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the homeserver over HTTP ------------------------------------------------------------------

async function api(method, path, { token, body, what = `${method} ${path}` } = {}) {
    // 429s are waited out (the test servers keep the default rate limits, and the js suite registered before us).
    const deadline = Date.now() + 2 * WAIT_MS;
    for (;;) {
        const res = await fetch(BASE_URL + path, {
            method,
            headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
            body: body ? JSON.stringify(body) : undefined,
            signal: AbortSignal.timeout(WAIT_MS),
        });
        const text = await res.text();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        if (res.status === 429 && Date.now() < deadline) {
            const wait = Math.min(Math.max(Number(json?.retry_after_ms) || 1000, 200), 15_000);
            console.error(`${what}: 429 ${json?.errcode ?? ""}, retrying in ${wait} ms`);
            await sleep(wait);
            continue;
        }
        return { status: res.status, json, text };
    }
}

async function ok(method, path, opts = {}) {
    const r = await api(method, path, opts);
    assert.ok(r.status >= 200 && r.status < 300, `${opts.what ?? `${method} ${path}`}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    return r.json;
}

/** Registers through user-interactive auth: the 401 challenge, then a flow of m.login.dummy stages. */
async function register(localpart) {
    const req = { username: localpart, password: PASSWORD, initial_device_display_name: "hydrogen test (HTTP)" };
    const first = await api("POST", "/_matrix/client/v3/register", { body: req, what: `register ${localpart}` });
    if (first.status === 200) return first.json;
    assert.equal(first.status, 401, `register ${localpart}: expected the 401 UIA challenge, got ${first.status} ${first.text.slice(0, 300)}`);
    const flow = first.json.flows?.find((f) => f.stages.every((s) => s === "m.login.dummy"));
    assert.ok(flow, `register ${localpart}: no flow of m.login.dummy stages in ${first.text}`);
    let last = first;
    for (const stage of flow.stages.length ? flow.stages : ["m.login.dummy"]) {
        last = await api("POST", "/_matrix/client/v3/register", {
            body: { ...req, auth: { type: stage, session: first.json.session } },
            what: `register ${localpart} (${stage})`,
        });
        if (last.status === 200) break;
    }
    assert.equal(last.status, 200, `register ${localpart}: ${last.status} ${last.text.slice(0, 300)}`);
    return last.json;
}

const enc = encodeURIComponent;

async function sendText(user, roomId, body) {
    const txn = `hydrogen-${run}-${randomBytes(4).toString("hex")}`;
    return (await ok("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txn}`,
        { token: user.access_token, body: { msgtype: "m.text", body } })).event_id;
}

/** Waits until the room's newest events (GET /messages, backwards) hold a message with this body; returns it. */
async function waitForMessageOnServer(user, roomId, body) {
    const deadline = Date.now() + WAIT_MS;
    let seen = [];
    while (Date.now() < deadline) {
        const page = await ok("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=20`, { token: user.access_token });
        const hit = page.chunk.find((e) => e.type === "m.room.message" && e.content?.body === body);
        if (hit) return hit;
        seen = page.chunk.filter((e) => e.type === "m.room.message").map((e) => `${e.sender}: ${e.content?.body}`);
        await sleep(250);
    }
    assert.fail(`the server never held "${body}" in ${roomId} (within ${WAIT_MS} ms); its latest messages: ${JSON.stringify(seen)}`);
}

// ---- the browser -------------------------------------------------------------------------------

let hydrogen; // the static server of the page
let browser;
let page;
const pageProblems = []; // page errors, console errors, and failed homeserver requests, for failure messages
let alice;
let bob;
let roomId;
const roomName = `Hydrogen room ${run}`;
let loggedIn = false;
let roomOpen = false;

function problems() {
    return pageProblems.length ? `\npage problems so far:\n  ${pageProblems.slice(-15).join("\n  ")}` : "";
}

/** Waits for a locator to be visible; a timeout says what was awaited and what the page reported. */
async function visible(locator, what) {
    try {
        await locator.first().waitFor({ state: "visible", timeout: WAIT_MS });
    } catch (e) {
        const status = await page.locator(".SessionLoadStatusView, .PreSessionScreen .error, .SessionStatusView")
            .allInnerTexts().catch(() => []);
        assert.fail(`${what}: not shown within ${WAIT_MS} ms (${e.message.split("\n")[0]})` +
            (status.length ? `\nHydrogen shows: ${JSON.stringify(status)}` : "") + problems());
    }
}

before(async () => {
    assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
    const versions = await fetch(`${BASE_URL}/_matrix/client/versions`, { signal: AbortSignal.timeout(WAIT_MS) })
        .catch((e) => assert.fail(`Homeserver not reachable at ${BASE_URL}: ${e.message}`));
    assert.equal(versions.status, 200, `GET /_matrix/client/versions at ${BASE_URL}: HTTP ${versions.status}`);

    alice = await register(`hy_alice_${run}`);
    bob = await register(`hy_bob_${run}`);
    roomId = (await ok("POST", "/_matrix/client/v3/createRoom", {
        token: alice.access_token,
        body: { name: roomName, preset: "private_chat", invite: [bob.user_id] },
    })).room_id;
    await ok("POST", `/_matrix/client/v3/join/${enc(roomId)}`, { token: bob.access_token, body: {} });

    hydrogen = await serveHydrogen();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--disable-dev-shm-usage"] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS); // clicks and fills wait for their element up to WAIT_MS too
    page.on("pageerror", (e) => pageProblems.push(`page error: ${e.message}`));
    // Failed loads are reported by the response listener, with their URL.
    page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageProblems.push(`console: ${m.text()}`); });
    // Expected 404s: no /.well-known/matrix/client is configured on the test servers, and Hydrogen asks for a
    // dehydrated device on MSC2697's path (the server has MSC3814's; 404 means none to Hydrogen).
    const expected404 = /\/\.well-known\/matrix\/client|\/dehydrated_device/;
    page.on("response", (r) => {
        if (r.url().startsWith(BASE_URL) && r.status() >= 400 && !(r.status() === 404 && expected404.test(r.url()))) {
            pageProblems.push(`${r.request().method()} ${r.url().slice(BASE_URL.length)} -> ${r.status()}`);
        }
    });
    page.on("requestfailed", (r) => {
        if (r.url().startsWith(BASE_URL)) pageProblems.push(`${r.request().method()} ${r.url().slice(BASE_URL.length)} failed: ${r.failure()?.errorText}`);
    });
    console.log(`homeserver ${BASE_URL}; Hydrogen page ${hydrogen.url}; room ${roomId}; bob ${bob.user_id}`);
});

after(async () => {
    if (page) {
        try {
            mkdirSync(dirname(SCREENSHOT), { recursive: true });
            await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: WAIT_MS });
            console.log(`screenshot: ${SCREENSHOT}`);
        } catch (e) {
            console.log(`screenshot failed: ${e.message.split("\n")[0]}`);
        }
    }
    await browser?.close().catch(() => {});
    await hydrogen?.close();
});

test("hydrogen: bob signs in through the login screen (homeserver typed in, password login) and sees the room", async () => {
    // A message from before bob's session: his initial sync must bring it.
    await sendText(alice, roomId, `before login ${run}`);

    await page.goto(hydrogen.url);
    await visible(page.locator("#homeserver"), "the login screen's homeserver field");
    await page.fill("#homeserver", BASE_URL);
    // Hydrogen looks the homeserver up (/.well-known, /versions, /login) and then offers the password form.
    await visible(page.locator("#username"), "the password login form after the homeserver lookup");
    await page.fill("#username", bob.user_id.slice(1).split(":")[0]);
    await page.fill("#password", PASSWORD);
    await page.getByRole("button", { name: "Log In" }).click();
    // Login, the first sync (with the device's keys uploaded by its olm account), then the session view.
    await visible(page.locator(".SessionView"), "the session view after login");
    await visible(page.locator(".RoomList li", { hasText: roomName }), `the room "${roomName}" in the room list`);
    loggedIn = true;
});

test("hydrogen: bob opens the room and sees alice's earlier message", async () => {
    assert.ok(loggedIn, "bob is not signed in (the previous test failed)");
    await page.locator(".RoomList li", { hasText: roomName }).first().click();
    await visible(page.locator(".RoomView .RoomHeader", { hasText: roomName }), "the room's header");
    const earlier = page.locator(".Timeline_message", { hasText: `before login ${run}` });
    await visible(earlier, "alice's message from before the login");
    // Her display name (the localpart: no profile was set) heads her first message.
    await visible(earlier.locator(".Timeline_messageSender", { hasText: alice.user_id.slice(1).split(":")[0] }), "alice as the sender of that message");
    await visible(page.locator(".MessageComposer_input textarea"), "the composer");
    roomOpen = true;
});

test("hydrogen: a message alice sends over HTTP while the room is open appears in Hydrogen's timeline", async () => {
    assert.ok(roomOpen, "the room is not open (a previous test failed)");
    const body = `live from alice ${run}`;
    const eventId = await sendText(alice, roomId, body);
    // Delivered by Hydrogen's /sync long-poll, rendered as a message tile carrying the event ID, with alice as sender.
    const tile = page.locator(`.Timeline_message[data-event-id="${eventId}"]`);
    await visible(tile, `alice's live message ${eventId}`);
    assert.match(await tile.innerText(), new RegExp(body));
    assert.ok(!(await tile.getAttribute("class")).split(/\s+/).includes("own"), "alice's message is shown as bob's own");
});

test("hydrogen: a message bob types into Hydrogen's composer reaches the server and comes back as sent", async () => {
    assert.ok(roomOpen, "the room is not open (a previous test failed)");
    const body = `typed by bob in hydrogen ${run}`;
    const composer = page.locator(".MessageComposer_input textarea");
    await composer.click();
    await composer.fill(body);
    await composer.press("Enter");
    // The server must hold it, sent by bob (alice reads the room over HTTP)...
    const event = await waitForMessageOnServer(alice, roomId, body);
    assert.equal(event.sender, bob.user_id);
    assert.equal(event.content.msgtype, "m.text");
    // ...and Hydrogen must show it under the server's event ID: its own /sync brought the remote echo back.
    await visible(page.locator(`.Timeline_message[data-event-id="${event.event_id}"]`), `bob's message as the server stored it (${event.event_id})`);
    assert.equal(await composer.inputValue(), "", "the composer was not cleared after sending");
});
