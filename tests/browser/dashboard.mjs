// Drives examples/dashboard in Debian's Chromium as a person would: signs in, reads the chart,
// the total and the rows, pages on with the cursor, filters by a status. Prints what the page
// showed as JSON (or {"error": ...} when the page showed one).
// usage: node dashboard.mjs PAGE_URL API_URL TOKEN SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [page_url, api, token, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = {};
try {
  const page = await browser.newPage();
  out.requests = [];
  page.on("request", (r) => out.requests.push(`${r.method()} ${r.url()}`));
  await page.goto(page_url);
  await page.fill("#api", api);
  await page.fill("#token", token);
  await page.click("button[type=submit]");

  // Rendered, or refused: whichever comes first.
  const ready = async (pageNumber) => {
    await page.waitForFunction(
      (n) =>
        !document.getElementById("error").hidden ||
        (document.getElementById("rows").dataset.ready === "true" &&
          document.getElementById("rows").dataset.page === String(n)),
      pageNumber,
      { timeout: 20000 },
    );
    const error = await page.$eval("#error", (e) => (e.hidden ? null : e.textContent));
    if (error) throw Object.assign(new Error(error), { shown: true });
  };
  const rows = () =>
    page.$$eval("#rows tr", (trs) =>
      trs.map((tr) => {
        const row = { id: tr.dataset.id };
        for (const td of tr.querySelectorAll("td")) row[td.dataset.field] = td.textContent;
        return row;
      }),
    );
  const total = () => page.$eval("#total", (e) => Number(e.dataset.total));

  await ready(1);
  await page.waitForSelector("#chart[data-ready=true]", { timeout: 20000 });
  out.chart = await page.$$eval("#chart .bar", (bars) =>
    bars.map((b) => ({ status: b.dataset.status, count: Number(b.dataset.count) })),
  );
  out.total = await total();
  out.first = await rows();
  out.next_enabled = !(await page.$eval("#next", (b) => b.disabled));
  if (out.next_enabled) {
    await page.click("#next");
    await ready(2);
    out.second = await rows();
  }
  await page.selectOption("#status", "held");
  await ready(1);
  out.held = { total: await total(), rows: await rows() };
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  out.error = error.shown ? error.message : `the page did not render: ${error.message}`;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
