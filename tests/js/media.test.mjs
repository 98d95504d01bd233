// Real-client tests of the content repository: matrix-js-sdk uploads an avatar and an image, sends the image to a
// room, and fetches the image's thumbnail and download through the authenticated media URLs the SDK builds.
//
// Run with ./run.sh. Homeserver base URL: env CONDUIT_URL, default http://127.0.0.1:6167.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { deflateSync, crc32 } from "node:zlib";

import { createClient, MemoryStore, MsgType, EventType } from "matrix-js-sdk";
import { BASE_URL, quietLogger, randomLocalpart, register } from "./common.mjs";

/** A w×h RGB PNG (a gradient), made by hand: Node has zlib and CRC-32 but no image library. */
function png(w, h) {
    const raw = Buffer.alloc((w * 3 + 1) * h);
    for (let y = 0; y < h; y++) {
        const row = y * (w * 3 + 1);
        for (let x = 0; x < w; x++) {
            raw[row + 1 + x * 3] = (255 * x) / w;
            raw[row + 2 + x * 3] = (255 * y) / h;
            raw[row + 3 + x * 3] = x === y ? 255 : 60;
        }
    }
    const chunk = (type, data) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(data.length);
        const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE(crc32(body));
        return Buffer.concat([len, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // truecolour
    return Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk("IHDR", ihdr),
        chunk("IDAT", deflateSync(raw)),
        chunk("IEND", Buffer.alloc(0)),
    ]);
}

/** Width and height from a PNG's IHDR, or from a JPEG's first SOF marker. */
function imageSize(buf) {
    if (buf.subarray(0, 4).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47]))) return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
    if (buf[0] === 0xff && buf[1] === 0xd8) {
        for (let i = 2; i < buf.length - 9; ) {
            const marker = buf[i + 1];
            const len = buf.readUInt16BE(i + 2);
            if (marker >= 0xc0 && marker <= 0xc3) return [buf.readUInt16BE(i + 7), buf.readUInt16BE(i + 5)];
            i += 2 + len;
        }
    }
    throw new Error("not a PNG or JPEG");
}

let alice;
let creds;

before(async () => {
    creds = await register(randomLocalpart("media"));
    alice = createClient({
        baseUrl: BASE_URL,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
        store: new MemoryStore(),
        logger: quietLogger("media"),
    });
});

/** GETs a URL the SDK built, with the access token (authenticated media needs it). */
async function fetchAuthed(url) {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${creds.access_token}` } });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, `GET ${new URL(url).pathname}: ${res.status} ${body.toString("utf8", 0, 200)}`);
    return { res, body };
}

test("an uploaded avatar becomes the user's avatar_url and downloads intact", async () => {
    const avatar = png(256, 256);
    const { content_uri } = await alice.uploadContent(avatar, { name: "avatar.png", type: "image/png" });
    assert.match(content_uri, /^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/);
    await alice.setAvatarUrl(content_uri);
    const profile = await alice.getProfileInfo(creds.user_id);
    assert.equal(profile.avatar_url, content_uri);

    // The SDK's authenticated download URL (spec v1.11) gives back the same bytes, inline (a PNG is safe to show).
    const url = alice.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, true);
    assert.ok(url.includes("/_matrix/client/v1/media/download/"), url);
    const { res, body } = await fetchAuthed(url);
    assert.ok(body.equals(avatar));
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.match(res.headers.get("content-disposition"), /^inline/);
    assert.match(res.headers.get("content-security-policy"), /sandbox/);

    // The avatar as Element shows it in the room list: a 96x96 crop thumbnail.
    const thumb = alice.mxcUrlToHttp(content_uri, 96, 96, "crop", false, true, true);
    assert.ok(thumb.includes("/_matrix/client/v1/media/thumbnail/"), thumb);
    const t = await fetchAuthed(thumb);
    assert.deepEqual(imageSize(t.body), [96, 96]);
});

test("an image sent to a room gets a thumbnail through the SDK", async () => {
    const image = png(1200, 900);
    const { content_uri } = await alice.uploadContent(image, { name: "photo.png", type: "image/png" });
    const { room_id } = await alice.createRoom({ name: "pictures" });
    const { event_id } = await alice.sendMessage(room_id, {
        msgtype: MsgType.Image,
        body: "photo.png",
        url: content_uri,
        info: { mimetype: "image/png", size: image.length, w: 1200, h: 900 },
    });
    const ev = await alice.fetchRoomEvent(room_id, event_id);
    assert.equal(ev.type, EventType.RoomMessage);
    assert.equal(ev.content.url, content_uri);

    // Element's timeline thumbnail: 800x600 scale (a 1200x900 image scales to exactly 800x600).
    const thumb = alice.mxcUrlToHttp(ev.content.url, 800, 600, "scale", false, true, true);
    const { res, body } = await fetchAuthed(thumb);
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.deepEqual(imageSize(body), [800, 600]);
    // A small scale thumbnail: the smallest standard size that covers it, 320x240.
    const small = await fetchAuthed(alice.mxcUrlToHttp(ev.content.url, 200, 150, "scale", false, true, true));
    assert.deepEqual(imageSize(small.body), [320, 240]);

    // The server's upload limit as the SDK reads it.
    const config = await alice.getMediaConfig(true);
    assert.ok(config["m.upload.size"] > image.length);
});
