/**
 * The operator console in a real browser: headless Chromium (Debian
 * `chromium`, driven by npm `playwright-core`) opens the page of a running
 * embedded server with real TCP clients, logs in with the operator key,
 * and checks what a person would: the numbers shown are the server's own
 * counts, a chart moves when pushes flow, and a kick from the page reaches
 * the client as op 6 4008 while the count drops.
 *
 * Screenshots go to a temporary folder, or to `GOIM_CONSOLE_SCREENSHOTS`
 * when set (`GOIM_CONSOLE_SCREENSHOTS=docs/img` refreshes the ones in
 * docs/CONSOLE.md). Chromium is found at `GOIM_TEST_CHROMIUM` (default
 * /usr/bin/chromium); without it the test is ignored with a note, except
 * with `CI=true` (.ci/run installs it), where it fails.
 */

import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { createLogger } from "../infra/log.ts";
import { startEmbedded } from "../main.ts";
import { ReasonCode } from "../protocol/mod.ts";
import { TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { embeddedTestConfig } from "./fixtures/embedded_config.ts";

const CHROMIUM = Deno.env.get("GOIM_TEST_CHROMIUM") || "/usr/bin/chromium";
const CI = Deno.env.get("CI") === "true";
const found = await Deno.stat(CHROMIUM).then((s) => s.isFile, () => false);
if (!found && !CI) {
  console.warn(
    `note: no Chromium at ${CHROMIUM}; the console browser test is ignored ` +
      `(apt-get install chromium, or set GOIM_TEST_CHROMIUM)`,
  );
}

// Flags for a closed network: without the background-networking ones
// Chromium keeps trying to reach Google's services and misbehaves.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const KEY = "console-test-operator-key";
const PUSH_KEY = "console-test-push-key";
const WAIT_MS = 15_000;

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent())?.trim() ?? "";
}

// Page-side functions reach the DOM through an untyped globalThis: this
// file is type-checked for Deno, not the DOM (and the page's CSP refuses
// string evaluation, so they must be functions).
// deno-lint-ignore no-explicit-any
type AnyGlobal = any;

async function waitText(page: Page, selector: string, want: string): Promise<void> {
  await page.waitForFunction(
    ([sel, w]) => (globalThis as AnyGlobal).document.querySelector(sel)?.textContent?.trim() === w,
    [selector, want] as const,
    { timeout: WAIT_MS },
  );
}

function canvasPixels(page: Page, selector: string): Promise<string> {
  return page.evaluate(
    (sel) => (globalThis as AnyGlobal).document.querySelector(sel).toDataURL() as string,
    selector,
  );
}

Deno.test({
  name:
    "console (Chromium): the page shows the server's counts, charts move, a kick from the page reaches the client",
  ignore: !found && !CI,
  // Playwright's pipe to the browser process closes after the test's last await.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    if (!found) throw new Error(`CI=true: no Chromium at ${CHROMIUM}; .ci/run installs it (apt)`);
    const shotsDir = Deno.env.get("GOIM_CONSOLE_SCREENSHOTS") ?? await Deno.makeTempDir();
    const ownShots = Deno.env.get("GOIM_CONSOLE_SCREENSHOTS") === undefined;
    const profile = await Deno.makeTempDir({ prefix: "goim-chromium-" });
    const config = embeddedTestConfig([
      "node.id=comet-console",
      "comet.admin.bind=",
      "job.admin.bind=",
      "comet.renew_online_interval=200ms",
      `logic.operator.keys=${KEY}`,
      `logic.auth.api_keys=${PUSH_KEY}`,
    ]);
    const server = await startEmbedded(config, createLogger({ level: "error" }));
    const admin = `http://127.0.0.1:${server.logicAddrs.admin!.port}`;
    const http = `http://127.0.0.1:${server.logicAddrs.http.port}`;
    const clients: TcpTestClient[] = [];
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
    });
    try {
      const tcp = server.cometAddrs.tcp[0];
      for (
        const [mid, key, room] of [[501, "page-a", "live://page"], [501, "page-b", "live://page"], [
          502,
          "page-c",
          "",
        ]] as const
      ) {
        const c = await TcpTestClient.connect(tcp);
        await c.auth({ mid, key, room_id: room });
        clients.push(c);
      }
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => {
        // The refused key's 401s are the login under test, not errors.
        if (m.type() === "error" && !/status of 401/.test(m.text())) errors.push(m.text());
      });
      page.on("dialog", (d) => void d.accept());
      const res = await page.goto(`${admin}/console/`);
      assert.equal(res?.status(), 200);
      assert.match(res?.headers()["content-security-policy"] ?? "", /script-src 'self'/);

      // A wrong key is refused on the page; the right one opens it.
      await page.locator("#login").waitFor({ state: "visible", timeout: WAIT_MS });
      await page.fill("#key", "not-the-key");
      await page.click("#login button[type=submit]");
      await waitText(page, "#login-error", "The key was refused.");
      await page.fill("#key", KEY);
      await page.click("#login button[type=submit]");
      await page.locator("#main").waitFor({ state: "visible", timeout: WAIT_MS });

      // The numbers shown are the server's own counts.
      const stats = server.comet.stats();
      await waitText(page, "#total-connections", String(stats.connections));
      assert.equal(await text(page, "#total-ips"), String(stats.ips));
      assert.equal(await text(page, "#comet-states"), "1 / 0 / 0");
      const row = page.locator(`#comets tr[data-comet="${server.comet.id}"]`);
      await row.waitFor({ timeout: WAIT_MS });
      assert.equal((await row.locator("td").nth(1).textContent())?.trim(), "up");
      assert.equal((await row.locator("td").nth(2).textContent())?.trim(), "3");
      await waitText(page, "#rooms tbody tr td:nth-child(2)", "2");
      assert.equal(await text(page, "#rooms tbody tr td"), "live://page");

      // A chart moves when pushes flow: the newest point and the pixels change.
      const before = await canvasPixels(page, "#chart-pushes canvas");
      const push = async () => {
        const r = await fetch(`${http}/goim/push/room?operation=1000&type=live&room=page`, {
          method: "POST",
          body: "hello",
          headers: { authorization: `Bearer ${PUSH_KEY}` },
        });
        assert.equal(r.status, 200, await r.text());
      };
      const deadline = Date.now() + WAIT_MS;
      let last: number[] = [];
      while (Date.now() < deadline) {
        await push();
        last = JSON.parse(
          await page.locator("#chart-pushes").getAttribute("data-last") ?? "[]",
        );
        if ((last[2] ?? 0) > 0) break;
        await page.waitForTimeout(200); // pushes spread over time, one poll at a time
      }
      assert.ok((last[2] ?? 0) > 0, `room pushes/s on the chart: ${JSON.stringify(last)}`);
      const after = await canvasPixels(page, "#chart-pushes canvas");
      assert.notEqual(after, before, "the chart was redrawn with the new points");
      assert.notEqual(await text(page, "#frames-out"), "0");
      if (!ownShots) {
        // For the docs' picture only: 20 s of mixed pushes (about 20 a second), so the
        // charts hold a history rather than a first point.
        const until = Date.now() + 20_000;
        for (let i = 0; Date.now() < until; i++) {
          const kind = ["room?type=live&room=page", "keys?keys=page-b", "mids?mids=502", "all?x=1"];
          const r = await fetch(`${http}/goim/push/${kind[i % 4]}&operation=1000`, {
            method: "POST",
            body: "hello",
            headers: { authorization: `Bearer ${PUSH_KEY}` },
          });
          await r.body?.cancel();
          await page.waitForTimeout(i % 40 < 20 ? 30 : 80); // a rate that varies, on purpose
        }
      }
      await page.screenshot({ path: `${shotsDir}/console.png`, fullPage: true });

      // Kick from the page: look the mid up, click Kick on one key.
      await page.fill("#lookup-value", "501");
      await page.click("#lookup button[type=submit]");
      const kick = page.locator('[data-testid="kick-page-a"]');
      await kick.waitFor({ timeout: WAIT_MS });
      assert.equal(await page.locator("#sessions tbody tr").count(), 2);
      await page.fill("#kick-reason", "console test");
      await kick.click();
      const kicked = clients[0];
      await kicked.waitClosed();
      assert.equal(kicked.reason()?.code, ReasonCode.Kicked);
      assert.match(kicked.reason()?.message ?? "", /console test/);
      assert.equal(clients[1].isClosed, false);
      await waitText(page, "#total-connections", "2");
      await waitText(page, "#sessions-note", "kicked 1 connection(s)");
      await page.screenshot({ path: `${shotsDir}/console-kick.png`, fullPage: true });
      assert.deepEqual(errors, [], "no script errors on the page");
    } finally {
      await browser.close();
      for (const c of clients) c.close();
      await Promise.all(clients.map((c) => c.done));
      await server.stop();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      if (ownShots) await Deno.remove(shotsDir, { recursive: true }).catch(() => {});
    }
  },
});
