#!/usr/bin/env node
// The demo page in headless Chromium, kept off the network: draws digits and a
// non-digit with the mouse, checks the page's answers, saves a screenshot per case.
//
//   node tests/browser/demo.mjs --url http://127.0.0.1:8080/ --out target/browser-artifacts
//
// Options: --chromium PATH (default $CHROMIUM or /usr/bin/chromium), --timeout-ms N
// (per answer, default 15000). Exits 0 when every case passes, 1 with a message naming
// each failing case otherwise, 2 on bad usage or when the browser cannot start.

import { mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

// Strokes in the 280x280 canvas's own pixels; each stroke is a polyline.
const ellipse = (cx, cy, rx, ry, n = 48) =>
  Array.from({ length: n + 1 }, (_, i) => {
    const a = (2 * Math.PI * i) / n;
    return [cx + rx * Math.sin(a), cy - ry * Math.cos(a)];
  });

// What models/mnist-l2 (the default when this was written; the test also passes with
// models/mnist-cosface-oe-shift) answers, tried by hand among
// about twenty shapes (README, "Demo page"): a square outline is rejected at every
// contamination the page offers (LOF score -2.59, threshold -1.71 at 0.1 %), a big X
// at every level too but by less (-1.80), so it is judged at the page's highest, 5 %.
// A filled square, a star, a spiral, a W are taken for digits at 1 %. shapes.mjs redoes
// this survey for another model.
const CASES = [
  { name: "digit-1", strokes: [[[145, 40], [138, 240]]], expect: { outcome: "classify", digit: "1" } },
  {
    name: "digit-7",
    strokes: [[[70, 55], [205, 50], [125, 240]]],
    expect: { outcome: "classify", digit: "7" },
  },
  { name: "digit-0", strokes: [ellipse(140, 140, 62, 95)], expect: { outcome: "classify", digit: "0" } },
  {
    name: "not-digit-square",
    strokes: [[[50, 50], [230, 50], [230, 230], [50, 230], [50, 50]]],
    expect: { outcome: "reject", digit: "Not a digit" },
  },
  {
    name: "not-digit-x",
    strokes: [[[40, 40], [240, 240]], [[240, 40], [40, 240]]],
    contamination: "0.05",
    expect: { outcome: "reject", digit: "Not a digit" },
  },
];

function usage(message) {
  console.error(`demo.mjs: ${message}\nusage: node demo.mjs --url http://127.0.0.1:PORT/ --out DIR [--chromium PATH] [--timeout-ms N]`);
  process.exit(2);
}

async function draw(page, strokes) {
  const box = await page.locator("#canvas").boundingBox();
  if (!box) throw new Error("#canvas is not visible");
  const at = ([x, y]) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
  for (const stroke of strokes) {
    const [first, ...rest] = stroke.map(at);
    await page.mouse.move(...first);
    await page.mouse.down();
    for (const p of rest) await page.mouse.move(...p, { steps: 8 });
    await page.mouse.up();
  }
}

async function answerAfter(page, before, timeout) {
  await page.waitForFunction(
    (n) => {
      const a = document.getElementById("answer");
      return a.dataset.pending === "false" && Number(a.dataset.answers) > n;
    },
    before,
    { timeout },
  );
  // Thumbnails of the nearest training digits load after the answer is shown.
  await page
    .waitForFunction(() => [...document.querySelectorAll("#neighbours img")].every((img) => img.complete), null, {
      timeout,
    })
    .catch(() => {});
  return page.evaluate(() => {
    const a = document.getElementById("answer");
    const text = (id) => document.getElementById(id).textContent.trim();
    const input = document.getElementById("model-input");
    const pixels = input.getContext("2d").getImageData(0, 0, input.width, input.height).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4) ink += pixels[i] > 0 ? 1 : 0;
    const neighbours = [...document.querySelectorAll("#neighbours li")].map((li) => {
      const img = li.querySelector("img");
      return { id: li.dataset.trainingId, label: li.dataset.label, loaded: img.complete && img.naturalWidth === 28 };
    });
    return {
      outcome: a.dataset.outcome,
      digit: text("digit"),
      detail: text("detail"),
      evidence: text("evidence"),
      inputInk: ink,
      neighbours,
    };
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      out: { type: "string" },
      chromium: { type: "string", default: process.env.CHROMIUM || "/usr/bin/chromium" },
      "timeout-ms": { type: "string", default: "15000" },
    },
  });
  if (!values.url) usage("--url is required");
  if (!values.out) usage("--out is required");
  if (!existsSync(values.chromium)) {
    usage(`no Chromium at ${values.chromium}: apt-get install chromium (scripts/setup.sh test does), or pass --chromium`);
  }
  const timeout = Number(values["timeout-ms"]);
  const url = new URL(values.url);
  await mkdir(values.out, { recursive: true });

  let browser;
  try {
    browser = await chromium.launch({
      executablePath: values.chromium,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${url.hostname}`,
      ],
    });
  } catch (error) {
    console.error(`demo.mjs: cannot start Chromium (${values.chromium}): ${error.message}`);
    process.exit(2);
  }

  const failures = [];
  const results = [];
  const offsite = [];
  const pageErrors = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1040, height: 760 } });
    // Only the server under test: anything else (a CDN, a font) is a bug in the page.
    await context.route("**/*", (route) => {
      const requested = new URL(route.request().url());
      if (requested.origin === url.origin) return route.continue();
      offsite.push(requested.href);
      return route.abort("blockedbyclient");
    });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(`console: ${message.text()}`);
    });
    await page.goto(url.href, { waitUntil: "load", timeout });
    await page.waitForFunction(() => document.body.dataset.model, null, { timeout });
    const model = await page.evaluate(() => document.body.dataset.model);
    console.log(`demo page at ${url.href}, model ${model}`);

    for (const c of CASES) {
      await page.click("#clear");
      await page.selectOption("#contamination", c.contamination ?? "0.01");
      const before = await page.evaluate(() => Number(document.getElementById("answer").dataset.answers));
      let got;
      try {
        await draw(page, c.strokes);
        got = await answerAfter(page, before, timeout);
      } catch (error) {
        got = { error: error.message };
      }
      const shot = path.join(values.out, `${c.name}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      const problems = [];
      if (got.error) problems.push(got.error);
      else {
        if (got.outcome !== c.expect.outcome || got.digit !== c.expect.digit) {
          problems.push(`expected ${c.expect.outcome} "${c.expect.digit}", the page shows ${got.outcome} "${got.digit}" (${got.detail} ${got.evidence})`);
        }
        if (got.inputInk === 0) problems.push("the model input shown is empty");
        if (c.expect.outcome === "reject") {
          if (got.neighbours.length === 0) problems.push("no nearest training digits shown");
          else if (!got.neighbours.every((n) => n.loaded)) problems.push("a training digit thumbnail did not load");
        }
        const level = await page.evaluate(() => document.getElementById("contamination").selectedOptions[0].textContent);
        if (!got.evidence.includes(`contamination ${level}`)) {
          problems.push(`the contamination level (${level}) is not shown: "${got.evidence}"`);
        }
      }
      const line = `${c.name} (contamination ${c.contamination ?? "0.01"}): ${got.outcome ?? "-"} "${got.digit ?? "-"}" ${got.detail ?? ""} ${got.evidence ?? ""}`;
      console.log(`${problems.length ? "FAIL" : "ok  "} ${line}\n     screenshot ${shot}`);
      results.push({ case: c.name, contamination: c.contamination ?? "0.01", ...got, screenshot: shot, problems });
      if (problems.length) failures.push(`${c.name}: ${problems.join("; ")}`);
    }

    await page.click("#clear");
    const cleared = await page.evaluate(() => document.getElementById("answer").dataset.outcome);
    if (cleared !== "none") failures.push(`after Clear the answer is "${cleared}", not "none"`);
  } catch (error) {
    failures.push(`the test itself failed: ${error.stack ?? error}`);
  } finally {
    await browser.close();
  }
  if (offsite.length) failures.push(`the page asked for other hosts: ${[...new Set(offsite)].join(", ")}`);
  if (pageErrors.length) failures.push(`errors in the page: ${pageErrors.join(" | ")}`);
  await writeFile(path.join(values.out, "results.json"), JSON.stringify({ results, failures }, null, 2));

  if (failures.length) {
    console.error(`demo.mjs: ${failures.length} failure(s):\n- ${failures.join("\n- ")}`);
    process.exit(1);
  }
  console.log(`demo.mjs: all ${CASES.length} cases passed; screenshots in ${values.out}`);
}

await main();
