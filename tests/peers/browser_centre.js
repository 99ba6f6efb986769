// Opens the deliverer's demo page twice (two tabs of one user) in headless Chromium and uses
// its notification centre; reports on stdout, one line each:
//   CONNECTED                  both tabs show the socket open
//   BADGE <tab 1> <tab 2>      both badges once they show the expected unread count
//   CLEARED <tab 1> <tab 2>    both badges after "Mark all read" on the first tab
// Usage: node browser_centre.js <demo page URL> <expected unread> [timeout seconds]
const { launch, reportingPage, run } = require("./chromium");

const badge = (page) => page.textContent("#unread");

async function main() {
  const [url, expected, seconds = "60"] = process.argv.slice(2);
  const timeout = Number(seconds) * 1000;
  const browser = await launch();
  try {
    const tabs = [await reportingPage(browser), await reportingPage(browser)];
    for (const tab of tabs) await tab.goto(url);
    for (const tab of tabs) await tab.waitForSelector('#status[data-state="open"]', { timeout });
    console.log("CONNECTED");
    for (const tab of tabs) await tab.waitForSelector(`#unread[data-count="${expected}"]`, { timeout });
    console.log(`BADGE ${await badge(tabs[0])} ${await badge(tabs[1])}`);
    await tabs[0].click("#mark-all-read");
    for (const tab of tabs) await tab.waitForSelector('#unread[data-count="0"]', { timeout });
    await tabs[1].waitForSelector('#inbox li[data-read="false"]', { state: "detached", timeout });
    console.log(`CLEARED ${await badge(tabs[0])} ${await badge(tabs[1])}`);
  } finally {
    await browser.close();
  }
}

run("browser_centre", main);
