/**
 * The operator console's page (docs/CONSOLE.md): plain HTML, CSS and one
 * script in ./console/, plus the uPlot chart library read from its npm
 * package (`uplot`, pinned in deno.json) — no build step, no CDN, so it
 * works offline and in a closed network. Served by logic on its admin
 * listener under {@linkcode CONSOLE_PREFIX}.
 *
 * The files hold no data: the script asks for the operator key, keeps it in
 * the tab's `sessionStorage` and calls the operator API (./operator.ts) with
 * it, so the page itself needs no key and everything it shows does. Every
 * answer carries a Content-Security-Policy that allows only this origin's
 * scripts, styles and API (no inline script, no eval, no framing), and
 * `nosniff`; the script writes every value as text, never as HTML.
 *
 * The files are read once, on the first request (`deno compile` needs
 * `--include logic/console/`, which the compile task passes).
 *
 * @module
 */

import { createRequire } from "node:module";
// Puts the package in the module graph (so Deno fetches it) without running its code.
import uplotPackage from "uplot/package.json" with { type: "json" };

/** Prefix of the console's files. */
export const CONSOLE_PREFIX = "/console/";

/** The policy every console answer carries. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

interface Asset {
  type: string;
  url: () => URL;
}

const require = createRequire(import.meta.url);
const local = (name: string) => () => new URL(`./console/${name}`, import.meta.url);
const vendor = (file: string) => () => new URL(`file://${require.resolve(`uplot/dist/${file}`)}`);

const ASSETS: Record<string, Asset> = {
  "": { type: "text/html; charset=utf-8", url: local("index.html") },
  "index.html": { type: "text/html; charset=utf-8", url: local("index.html") },
  "console.js": { type: "text/javascript; charset=utf-8", url: local("console.js") },
  "console.css": { type: "text/css; charset=utf-8", url: local("console.css") },
  "uPlot.iife.min.js": { type: "text/javascript; charset=utf-8", url: vendor("uPlot.iife.min.js") },
  "uPlot.min.css": { type: "text/css; charset=utf-8", url: vendor("uPlot.min.css") },
};

/** The uPlot version the page runs (for the page footer and docs). */
export const UPLOT_VERSION: string = uplotPackage.version;

/**
 * The console's file handler: GET/HEAD of the files above, 404 for anything
 * else under the prefix, `/console` redirected to `/console/`.
 *
 * @example
 * ```ts
 * const serve = createConsoleHandler();
 * const res = await serve(new Request("http://127.0.0.1:3191/console/"));
 * res.headers.get("content-security-policy"); // "default-src 'none'; script-src 'self'; ..."
 * ```
 */
export function createConsoleHandler(): (req: Request) => Promise<Response> {
  const cache = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();
  const headers = (type: string) => ({
    "content-type": type,
    "content-security-policy": CONSOLE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
  });
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/console") {
      return new Response(null, { status: 308, headers: { location: CONSOLE_PREFIX } });
    }
    const name = path.slice(CONSOLE_PREFIX.length);
    const asset = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
    if (asset === undefined) {
      return new Response("not found\n", { status: 404, headers: headers("text/plain") });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", {
        status: 405,
        headers: { ...headers("text/plain"), allow: "GET" },
      });
    }
    let bytes = cache.get(name);
    if (bytes === undefined) {
      bytes = Promise.resolve().then(() => Deno.readFile(asset.url()));
      cache.set(name, bytes);
      bytes.catch(() => cache.delete(name));
    }
    try {
      const body = await bytes;
      return new Response(req.method === "HEAD" ? null : body, { headers: headers(asset.type) });
    } catch (e) {
      return new Response(`console file ${name} unavailable: ${(e as Error).message}\n`, {
        status: 500,
        headers: headers("text/plain"),
      });
    }
  };
}
