// Opens the deliverer's demo page in headless Chromium (Debian's `chromium`, driven by
// playwright-core) and reports on stdout, one word per line:
//   CONNECTED            the page shows the socket open
//   SHOWN <message id>   a message with the expected body is on the page
//   ACKED <message id>   the page marked it acked (the server confirmed the ack)
// Usage: node browser_demo.js <demo page URL> <expected body> [timeout seconds]
const { launch, reportingPage, run } = require("./chromium");

async function main() {
  const [url, expected, seconds = "60"] = process.argv.slice(2);
  const timeout = Number(seconds) * 1000;
  const browser = await launch();
  try {
    const page = await reportingPage(browser);
    await page.goto(url);
    await page.waitForSelector('#status[data-state="open"]', { timeout });
    console.log("CONNECTED");
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
