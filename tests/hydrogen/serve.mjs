// Serves the Hydrogen web client from hydrogen-view-sdk's prebuilt files, with no bundler: a page that starts the
// whole app (RootViewModel and RootView, as Hydrogen's own main.js does), an import map for the bare imports of the
// SDK's ES build, and the SDK's assets (CSS, fonts, icons, the olm worker, the service worker), olm's wasm for its
// end-to-end encryption. The page is served on its own loopback port, so it is another origin than the homeserver
// and every request Hydrogen makes to the homeserver goes through CORS, as it does for a deployed Hydrogen.
//
//   import { serveHydrogen } from "./serve.mjs";  const { url, close } = await serveHydrogen();
//   node serve.mjs [PORT]                          serve it by hand (default: a port the system picks)

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const sdk = join(modules, "hydrogen-view-sdk");

const types = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
};

// URL prefix -> directory. Nothing outside these directories is served.
const dirs = {
    "/sdk/": join(sdk, "lib-build"),
    "/assets/": join(sdk, "asset-build", "assets"),
    "/olm/": join(modules, "@matrix-org", "olm"),
};

// The SDK's ES build imports these by bare name. dompurify ships an ES module; the others are CommonJS and are
// wrapped here into a module whose default export is their module.exports. The side-effect import of olm.js is
// only there for bundlers: the Platform loads olm itself from assetPaths.olm.
const cjs = {
    "another-json": join(modules, "another-json", "another-json.js"),
    "base64-arraybuffer": join(modules, "base64-arraybuffer", "lib", "base64-arraybuffer.js"),
    "off-color": join(modules, "off-color", "cjs", "index.js"),
};
const importMap = {
    imports: {
        "dompurify": "/node/dompurify/dist/purify.es.js",
        "@matrix-org/olm/olm.js": "/shim/empty.mjs",
        ...Object.fromEntries(Object.keys(cjs).map((name) => [name, `/shim/${name}.mjs`])),
    },
};

const page = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hydrogen</title>
<link rel="stylesheet" href="/assets/theme-element-light.css">
<script type="importmap">${JSON.stringify(importMap)}</script>
<style>html, body { height: 100%; margin: 0; } #app { height: 100%; }</style>
</head>
<body>
<div id="app" class="hydrogen"></div>
<script type="module" src="/app.mjs"></script>
</body>
</html>
`;

// Hydrogen's src/platform/web/main.js, with the SDK's exports. The homeserver is typed in on the login screen.
const app = `import { Platform, RootViewModel, FeatureSet, createNavigation, createRouter } from "/sdk/hydrogen.es.js";

const assetPaths = {
    downloadSandbox: "/assets/download-sandbox.html",
    worker: "/assets/main.js",
    serviceWorker: "/sw.js",
    olm: { wasm: "/olm/olm.wasm", legacyBundle: "/olm/olm_legacy.js", wasmBundle: "/olm/olm.js" },
};

async function main() {
    const container = document.getElementById("app");
    const platform = new Platform({ container, assetPaths, config: { defaultHomeServer: "" }, options: { development: false } });
    const navigation = createNavigation();
    platform.setNavigation(navigation);
    await platform.init();
    const urlRouter = createRouter({ navigation, history: platform.history });
    urlRouter.attach();
    const vm = new RootViewModel({ platform, urlRouter, navigation, features: await FeatureSet.load(platform.settingsStorage) });
    await vm.load();
    platform.createAndMountRootView(vm);
    window.__hydrogenStarted = true;
}

main().catch((e) => {
    console.error("hydrogen main failed:", e);
    window.__hydrogenError = String(e && e.stack || e);
});
`;

async function fileIn(dir, rest) {
    const path = normalize(join(dir, decodeURIComponent(rest)));
    if (path !== dir && !path.startsWith(dir + sep)) return null;
    try {
        return { body: await readFile(path), type: types[extname(path)] ?? "application/octet-stream" };
    } catch {
        return null;
    }
}

async function resolve(pathname) {
    if (pathname === "/" || pathname === "/index.html") return { body: page, type: types[".html"] };
    if (pathname === "/app.mjs") return { body: app, type: types[".mjs"] };
    // The service worker must come from the root to control the page.
    if (pathname === "/sw.js") return fileIn(join(sdk, "lib-build"), "sw.js");
    if (pathname === "/shim/empty.mjs") return { body: "export {};\n", type: types[".mjs"] };
    const shim = /^\/shim\/(.+)\.mjs$/.exec(pathname);
    if (shim && cjs[shim[1]]) {
        const source = await readFile(cjs[shim[1]], "utf8");
        const body = `const module = { exports: {} };\nconst exports = module.exports;\n(function (module, exports) {\n${source}\n})(module, exports);\nexport default module.exports;\n`;
        return { body, type: types[".mjs"] };
    }
    if (pathname.startsWith("/node/dompurify/dist/")) return fileIn(join(modules, "dompurify", "dist"), pathname.slice("/node/dompurify/dist/".length));
    for (const [prefix, dir] of Object.entries(dirs)) {
        if (pathname.startsWith(prefix)) return fileIn(dir, pathname.slice(prefix.length));
    }
    return null;
}

/** Starts the static server on 127.0.0.1 (port 0: the system picks one). Resolves to { url, close }. */
export async function serveHydrogen(port = 0) {
    const server = createServer(async (req, res) => {
        try {
            const { pathname } = new URL(req.url, "http://localhost");
            const found = req.method === "GET" || req.method === "HEAD" ? await resolve(pathname) : null;
            if (!found) {
                res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
                return;
            }
            res.writeHead(200, { "content-type": found.type, "cache-control": "no-store" });
            res.end(req.method === "HEAD" ? undefined : found.body);
        } catch (e) {
            res.writeHead(500, { "content-type": "text/plain" }).end(String(e));
        }
    });
    await new Promise((ok, fail) => {
        server.once("error", fail);
        server.listen(port, "127.0.0.1", ok);
    });
    const url = `http://127.0.0.1:${server.address().port}`;
    return {
        url,
        close: () => new Promise((ok) => {
            server.closeAllConnections?.();
            server.close(() => ok());
        }),
    };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    const { url } = await serveHydrogen(Number(process.argv[2] ?? 0));
    console.log(`hydrogen: serving on ${url}`);
}
