// Visits pages in a running Chromium over the DevTools protocol and reports what each showed.
// Run by tests/src/browser.rs, with NODE_PATH naming the node_modules dev/chromium installs.
//
// stdin: {"endpoint": "ws://127.0.0.1:…/devtools/browser/…",
//         "pages": [{"name", "url", "wait_for": CSS selector, "evaluate": JS expression,
//                    "screenshot": PNG path or null, "full_page": bool}]}
// stdout: {"pages": [{"name", "url", "title", "value": what `evaluate` returned,
//                     "console": [{"type", "text"}], "page_errors": [..],
//                     "failed_requests": [{"url", "failure"}], "error": text or null}]}
"use strict";

const { chromium } = require("playwright-core");

const WAIT_MS = 30_000;

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function visit(context, spec) {
  const report = {
    name: spec.name,
    url: spec.url,
    title: null,
    value: null,
    console: [],
    page_errors: [],
    failed_requests: [],
    error: null,
  };
  const page = await context.newPage();
  page.on("console", (m) => report.console.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => report.page_errors.push(String(e)));
  page.on("requestfailed", (r) =>
    report.failed_requests.push({ url: r.url(), failure: r.failure()?.errorText ?? "" }),
  );
  try {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(spec.url, { waitUntil: "load", timeout: WAIT_MS });
    if (spec.wait_for) {
      await page.waitForSelector(spec.wait_for, { timeout: WAIT_MS });
    }
    report.title = await page.title();
    if (spec.evaluate) {
      report.value = await page.evaluate(spec.evaluate);
    }
    if (spec.screenshot) {
      await page.screenshot({ path: spec.screenshot, fullPage: Boolean(spec.full_page) });
    }
  } catch (e) {
    report.error = String(e);
  } finally {
    await page.close();
  }
  return report;
}

async function main() {
  const plan = await readStdin();
  const browser = await chromium.connectOverCDP(plan.endpoint, { timeout: WAIT_MS });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const pages = [];
  for (const spec of plan.pages) {
    pages.push(await visit(context, spec));
  }
  process.stdout.write(JSON.stringify({ pages }));
  // Disconnects only: the test that started the browser ends it.
  await browser.close().catch(() => {});
}

main().catch((e) => {
  process.stderr.write(`visit.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
