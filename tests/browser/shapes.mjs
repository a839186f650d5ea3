#!/usr/bin/env node
// Which shapes does the served model reject, and from which contamination? Draws each
// shape on the demo page and prints its answer at every level the page offers. A survey
// for exploring a model, never for choosing demo.mjs's cases: those are fixed in advance
// (DESIGN.md, "Measuring out-of-distribution quality honestly").
//
//   node tests/browser/shapes.mjs http://127.0.0.1:8080/ [shape ...]
//
// Screenshots go to /tmp/oodgate-shape-NAME.png.
import { chromium } from "playwright-core";
const url = process.argv[2];
if (!url) {
  console.error("usage: node shapes.mjs http://127.0.0.1:PORT/ [shape ...]");
  process.exit(2);
}
const ellipse = (cx, cy, rx, ry, n = 48, a0 = 0, a1 = 2 * Math.PI) =>
  Array.from({ length: n + 1 }, (_, i) => { const a = a0 + ((a1 - a0) * i) / n; return [cx + rx * Math.sin(a), cy - ry * Math.cos(a)]; });
const filledRect = (x0, y0, x1, y1) => { const p = []; for (let y = y0, r = true; y <= y1; y += 12, r = !r) p.push(r ? [x0, y] : [x1, y], r ? [x1, y] : [x0, y]); return [p]; };
const star = () => { const p = []; for (let i = 0; i <= 5; i++) { const a = (i * 4 * Math.PI) / 5; p.push([140 + 100 * Math.sin(a), 140 - 100 * Math.cos(a)]); } return [p]; };
const spiral = () => [Array.from({ length: 120 }, (_, i) => { const a = i * 0.2, r = 8 + i * 0.8; return [140 + r * Math.cos(a), 140 + r * Math.sin(a)]; })];
const shapes = {
  one: [[[145, 40], [138, 240]]],
  seven: [[[70, 55], [205, 50], [125, 240]]],
  zero: [ellipse(140, 140, 62, 95)],
  square: filledRect(50, 50, 230, 230),
  squareOutline: [[[50, 50], [230, 50], [230, 230], [50, 230], [50, 50]]],
  bigX: [[[40, 40], [240, 240]], [[240, 40], [40, 240]]],
  plus: [[[140, 30], [140, 250]], [[30, 140], [250, 140]]],
  hash: [[[100, 30], [90, 250]], [[190, 30], [180, 250]], [[30, 100], [250, 100]], [[30, 180], [250, 180]]],
  letterA: [[[40, 250], [140, 30], [240, 250]], [[85, 160], [195, 160]]],
  letterW: [[[30, 40], [80, 240], [140, 100], [200, 240], [250, 40]]],
  letterM: [[[40, 240], [40, 40], [140, 160], [240, 40], [240, 240]]],
  star: star(),
  spiral: spiral(),
  smiley: [ellipse(140, 140, 110, 110), [[105, 100], [106, 101]], [[175, 100], [176, 101]], ellipse(140, 150, 60, 50, 16, Math.PI * 0.6, Math.PI * 1.4)],
  grid: [[[100, 30], [100, 250]], [[180, 30], [180, 250]], [[30, 100], [250, 100]], [[30, 180], [250, 180]]],
  triangle: [[[140, 30], [250, 240], [30, 240], [140, 30]]],
  zigzag: [[[30, 60], [250, 80], [30, 110], [250, 140], [30, 170], [250, 200], [30, 230]]],
  circleCross: [ellipse(140, 140, 100, 100), [[40, 140], [240, 140]], [[140, 40], [140, 240]]],
  hline: [[[30, 140], [250, 140]]],
  dot: [[[140, 140], [141, 141]]],
};
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [
  "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--disable-default-apps", `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${new URL(url).hostname}`,
] });
const page = await browser.newPage({ viewport: { width: 1040, height: 760 } });
await page.goto(url);
await page.waitForFunction(() => document.body.dataset.model);
const only = process.argv.slice(3);
for (const [name, strokes] of Object.entries(shapes)) {
  if (only.length && !only.includes(name)) continue;
  await page.click("#clear");
  await page.selectOption("#contamination", "0.001");
  const box = await page.locator("#canvas").boundingBox();
  let n = await page.evaluate(() => Number(document.getElementById("answer").dataset.answers));
  for (const s of strokes) { await page.mouse.move(box.x + s[0][0], box.y + s[0][1]); await page.mouse.down(); for (const p of s.slice(1)) await page.mouse.move(box.x + p[0], box.y + p[1], { steps: 8 }); await page.mouse.up(); }
  const out = [];
  for (const c of ["0.001", "0.005", "0.01", "0.02", "0.05"]) {
    if (c !== "0.001") await page.selectOption("#contamination", c);
    await page.waitForFunction((k) => { const a = document.getElementById("answer"); return a.dataset.pending === "false" && Number(a.dataset.answers) > k; }, n);
    n = await page.evaluate(() => Number(document.getElementById("answer").dataset.answers));
    const r = await page.evaluate(() => [document.getElementById("digit").textContent, document.getElementById("evidence").textContent, document.getElementById("detail").textContent]);
    out.push(`${c}: ${r[0] === "Not a digit" ? "REJECT(" + r[2].match(/said (\d)/)?.[1] + ")" : r[0]} ${r[1].match(/score (-?[\d.]+)/)?.[1]}/${r[1].match(/threshold (-?[\d.]+)/)?.[1]}`);
  }
  console.log(name.padEnd(14), out.join(" | "));
  await page.screenshot({ path: `/tmp/oodgate-shape-${name}.png` });
}
await browser.close();
