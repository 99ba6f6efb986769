// Opens the deliverer's demo page in headless Chromium and uses its preferences panel, then
// reports on stdout, one line each:
//   LOADED <channels and categories as the panel shows them, JSON>
//   SAVED                 after turning off the channel and the category given and saving
//   RELOADED <JSON>       the panel of a fresh page, read back from the server
//   SHOWN <message id>    a message with the expected body reached the page
// Usage: node browser_preferences.js <demo page URL> <channel> <category> <expected body> [timeout seconds]
const { launch, reportingPage, run } = require("./chromium");

async function panel(page, timeout) {
  await page.waitForSelector('#preferences[data-loaded="true"]', { timeout });
  return page.evaluate(() => {
    const state = {};
    for (const input of document.querySelectorAll("#preferences input")) {
      const name = input.dataset.channel ? `channel:${input.dataset.channel}` : `category:${input.dataset.category}`;
      state[name] = { checked: input.checked, disabled: input.disabled };
    }
    return state;
  });
}

async function main() {
  const [url, channel, category, expected, seconds = "60"] = process.argv.slice(2);
  const timeout = Number(seconds) * 1000;
  const browser = await launch();
  try {
    const page = await reportingPage(browser);
    await page.goto(url);
    console.log(`LOADED ${JSON.stringify(await panel(page, timeout))}`);
    await page.uncheck(`#preferences input[data-channel="${channel}"]`);
    await page.uncheck(`#preferences input[data-category="${category}"]`);
    await page.click("#preferences button");
    await page.waitForSelector('#prefs-status[data-state="saved"]', { timeout });
    console.log("SAVED");
    const fresh = await browser.newPage();
    await fresh.goto(url);
    console.log(`RELOADED ${JSON.stringify(await panel(fresh, timeout))}`);
    await fresh.close();
    await page.waitForSelector('#status[data-state="open"]', { timeout });
    const item = page.locator("#inbox li", { hasText: expected });
    await item.first().waitFor({ timeout });
    console.log(`SHOWN ${await item.first().getAttribute("data-id")}`);
  } finally {
    await browser.close();
  }
}

run("browser_preferences", main);
