// Drives Portico's operator console (/console) in Debian's Chromium as an operator would:
// signs in with a token, then reads what the page shows, presses Resend on a dead letter, or
// reads the refusal. Every request leaving for another origin is blocked and reported.
// Prints JSON: what the page showed, or {"error": ...}.
// usage: node console.mjs read|resend|refused BASE_URL TOKEN SCREENSHOT_PATH [DELIVERY_ID]
import { chromium } from "playwright-core";

const [mode, base, token, screenshot, deliveryId] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = { requests: [], blocked: [], page_errors: [] };
const origin = new URL(base).origin;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // No network but Portico: anything else is refused and named.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    out.blocked.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("request", (r) => out.requests.push(`${r.method()} ${r.url()}`));
  page.on("pageerror", (e) => out.page_errors.push(e.message));
  await page.goto(`${base}/console`);
  await page.fill("#token", token);
  await page.click("#sign-in button[type=submit]");

  // Rendered, or refused: whichever comes first.
  await page.waitForFunction(
    () => !document.getElementById("error").hidden ||
      document.getElementById("board").dataset.ready === "true",
    null,
    { timeout: 20000 },
  );
  const shownError = async () => {
    const error = await page.$("#error:not([hidden])");
    if (!error) return null;
    return { text: await error.textContent(), status: await error.getAttribute("data-status") };
  };
  out.shown_error = await shownError();
  out.board_visible = await page.isVisible("#board");
  out.sign_in_visible = await page.isVisible("#sign-in");
  out.session_token = await page.evaluate(() => sessionStorage.getItem("portico.console.token"));
  out.local_storage = await page.evaluate(() => localStorage.length);
  out.url = page.url();

  const table = (id) =>
    page.$$eval(`#${id} tbody tr`, (trs) =>
      trs.map((tr) => {
        const row = {};
        for (const td of tr.querySelectorAll("td[data-field]")) {
          row[td.dataset.field] = { value: td.dataset.value, text: td.textContent };
          if (td.dataset.max !== undefined) row.connections_max = { value: td.dataset.max, text: "" };
        }
        return row;
      }),
    );
  const read = async () => ({
    generated: await page.$eval("#board", (b) => b.dataset.generated),
    sources: await table("sources"),
    cache: await page.$$eval("#cache dd", (dds) =>
      Object.fromEntries(dds.map((dd) => [dd.dataset.field, { value: dd.dataset.value, text: dd.textContent }]))),
    feeds: await table("feeds"),
    subscriptions: await table("subscriptions"),
    versions: await table("versions"),
    dead_letters: await table("dead-letters"),
  });

  if (mode === "read" && !out.shown_error) {
    out.shown = await read();
    await page.screenshot({ path: screenshot, fullPage: true });
  } else if (mode === "resend" && !out.shown_error) {
    const button = `#dead-letters button.resend[data-id="${deliveryId}"]`;
    await page.waitForSelector(button, { timeout: 20000 });
    await page.click(button);
    await page.waitForSelector(`#outcome:not([hidden])[data-id="${deliveryId}"]`, { timeout: 20000 });
    out.outcome = await page.$eval("#outcome", (o) => ({ status: o.dataset.status, text: o.textContent }));
    if (screenshot !== "-") await page.screenshot({ path: screenshot, fullPage: true });
  } else if (mode === "refused") {
    out.rows_shown = await page.$$eval("#board tbody tr", (trs) => trs.length);
  }
} catch (error) {
  out.error = `the page did not render: ${error.message}`;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
