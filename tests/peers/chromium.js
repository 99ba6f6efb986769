// What the browser scripts share: Debian's headless Chromium launched through playwright-core,
// and pages whose console and errors go to stderr (the test's output).
const { chromium } = require("playwright-core");

/** Launches headless Chromium (`CHROMIUM_PATH`, else /usr/bin/chromium). */
function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** A new page of `owner` (a browser or a context) reporting to stderr. */
async function reportingPage(owner) {
  const page = await owner.newPage();
  page.on("console", (message) => process.stderr.write(`page: ${message.text()}\n`));
  page.on("pageerror", (error) => process.stderr.write(`page error: ${error}\n`));
  return page;
}

/** Runs `main`, ending the process with 1 and the error on stderr when it throws. */
function run(name, main) {
  main().catch((error) => {
    console.error(`${name}: ${error}`);
    process.exit(1);
  });
}

module.exports = { launch, reportingPage, run };
