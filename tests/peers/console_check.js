// Opens the accepter's operator console in headless Chromium (Debian's `chromium`, driven by
// playwright-core), signs in with the admin token, waits for the charts, saves a full-page
// screenshot, then signs in with a wrong token in a fresh context. Reports on stdout, one line
// each:
//   RENDERED <app cards> <svg charts> <dead-letter tiles above 0> <event endpoint rows>
//   STORED session=<token in sessionStorage> local=<entries in localStorage>
//   SCREENSHOT <png path>
//   REFUSED <status text>       the wrong token was refused and the token form is back
// Usage: node console_check.js <console URL> <admin token> <png path> <app cards> [timeout s]
const { launch, reportingPage, run } = require("./chromium");

async function signIn(page, url, token) {
  await page.goto(url);
  await page.fill("#token", token);
  await page.click('#login button[type="submit"]');
}

async function main() {
  const [url, token, png, apps, seconds = "60"] = process.argv.slice(2);
  const timeout = Number(seconds) * 1000;
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await reportingPage(context);
    await signIn(page, url, token);
    await page.waitForSelector('#status[data-state="ready"]', { timeout });
    await page.waitForFunction(
      (count) => document.querySelectorAll("#apps article svg.chart").length >= 2 * count,
      Number(apps),
      { timeout },
    );
    const cards = await page.locator("#apps article").count();
    const charts = await page.locator("svg.chart").count();
    const dead = await page.locator('.tile[data-nonzero="true"]').count();
    const endpoints = await page.locator("#event-endpoints tr[data-endpoint]").count();
    console.log(`RENDERED ${cards} ${charts} ${dead} ${endpoints}`);
    const [session, local] = await page.evaluate(() => [
      sessionStorage.getItem("sprayer.console.token") !== null,
      localStorage.length,
    ]);
    console.log(`STORED session=${session} local=${local}`);
    await page.screenshot({ path: png, fullPage: true });
    console.log(`SCREENSHOT ${png}`);

    const stranger = await (await browser.newContext()).newPage();
    await signIn(stranger, url, "not-the-admin-token");
    await stranger.waitForSelector('#status[data-state="error"]', { timeout });
    await stranger.waitForSelector("#login", { state: "visible", timeout });
    console.log(`REFUSED ${(await stranger.textContent("#status")).trim()}`);
  } finally {
    await browser.close();
  }
}

run("console_check", main);
