// Opens the deliverer's demo page in headless Chromium (Debian's `chromium`, driven by
// playwright-core) and reports on stdout, one word per line:
//   CONNECTED <transport> the page shows the client open, and over what
//   SHOWN <message id>   a message with the expected body is on the page
//   ACKED <message id>   the page marked it acked (the server confirmed the ack)
// Usage: node browser_demo.js <demo page URL> <expected body> [timeout seconds] [without]
// where `without` names globals to remove from the page before it loads (`WebSocket`, or
// `WebSocket,EventSource`), as browsers and networks without them are.
const { launch, reportingPage, run } = require("./chromium");

async function main() {
  const [url, expected, seconds = "60", without = ""] = process.argv.slice(2);
  const timeout = Number(seconds) * 1000;
  const browser = await launch();
  try {
    const page = await reportingPage(browser);
    const removed = without.split(",").filter(Boolean);
    await page.addInitScript((names) => {
      for (const name of names) delete window[name];
    }, removed);
    await page.goto(url);
    await page.waitForSelector('#status[data-state="open"]', { timeout });
    console.log(`CONNECTED ${await page.getAttribute("#status", "data-transport")}`);
    const item = page.locator("#inbox li", { hasText: expected });
    await item.first().waitFor({ timeout });
    const id = await item.first().getAttribute("data-id");
    console.log(`SHOWN ${id}`);
    await page.waitForSelector(`#inbox li[data-id="${id}"][data-acked="true"]`, { timeout });
    console.log(`ACKED ${id}`);
  } finally {
    await browser.close();
  }
}

run("browser_demo", main);
