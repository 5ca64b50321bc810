// Drives the example journal page in a real headless Chromium (Debian's, through
// playwright-core) as a user would: types email, passphrase and an entry, presses
// "Seal and send", waits for the answer. Prints JSON: the answer, the page's status
// lines, console messages and page errors.
// Usage: node dist/tools/drive-chromium.js URL IDENTITY PASSPHRASE TEXT
import { chromium } from "playwright-core";

const [url, identity, passphrase, text] = process.argv.slice(2);
if (!url || !identity || !passphrase || !text) {
  process.stderr.write("usage: drive-chromium.js URL IDENTITY PASSPHRASE TEXT\n");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.ZENVELOPE_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  // As root in a container: no sandbox. No background traffic on a closed network.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  const consoleMessages: string[] = [];
  const pageErrors: string[] = [];
  page.on("console", (m) => consoleMessages.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url);
  const secure = await page.evaluate(() => window.isSecureContext && !!crypto.subtle);
  await page.fill("#identity", identity);
  await page.fill("#passphrase", passphrase);
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForFunction(
    () => document.getElementById("answer")?.textContent || document.querySelector("#status .error"),
    undefined,
    { timeout: 120_000 },
  );
  const result = {
    secure_context: secure,
    answer: await page.textContent("#answer"),
    kind: await page.getAttribute("#answer", "data-kind"),
    status: await page.$$eval("#status li", (lis) => lis.map((li) => li.textContent ?? "")),
    console: consoleMessages,
    page_errors: pageErrors,
    user_agent: await page.evaluate(() => navigator.userAgent),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
} finally {
  await browser.close();
}
