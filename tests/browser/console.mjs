// The web console in a real browser: a person's walk through the pages that exist, run once
// with JavaScript on and once off (every form must work without it). On every page the walk
// reaches with JavaScript on, axe-core checks accessibility; any serious or critical
// violation fails the walk. With SCREENSHOT_DIR set, each page is saved there at 1280 and
// 390 px wide (NAME-1280.png, NAME-390.png).
//
// Inputs (environment):
//   BASE_URL        the server, e.g. http://127.0.0.1:PORT (no owner registered yet)
//   EMAIL, PASSWORD the owner the walk registers
//   JAVASCRIPT      on (default) or off
//   SCREENSHOT_DIR  optional: where to save the screenshots
//
// Prints one line per step ("ok NAME"), and exits 1 with what went wrong (and the page's
// text) when a step fails or axe finds a serious or critical violation. JavaScript off, axe
// cannot run in the page; the walk with JavaScript on visits the same pages.
//
// To add a page: add a step to STEPS. A step opens or submits something, then `expect`s
// what a person reads there.

import { readFileSync, mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const TIMEOUT_MS = 45_000;
const LAUNCH_TIMEOUT_MS = 90_000;
const CHROMIUM = '/usr/bin/chromium';
const AXE = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');

const base = process.env.BASE_URL;
const email = process.env.EMAIL;
const password = process.env.PASSWORD;
const javascript = (process.env.JAVASCRIPT || 'on') === 'on';
const screenshots = process.env.SCREENSHOT_DIR;
if (!base || !email || !password) {
  console.error('BASE_URL, EMAIL and PASSWORD are required');
  process.exit(2);
}

/// Fails the step unless the page shows `text`.
async function expect(page, text) {
  await page.getByText(text, { exact: false }).first().waitFor({ timeout: TIMEOUT_MS });
}

const STEPS = [
  {
    name: 'register',
    async run(page) {
      await page.goto(`${base}/register`);
      await expect(page, 'Create the owner account');
    },
  },
  {
    name: 'home',
    async run(page) {
      await page.fill('#email', email);
      await page.fill('#password', password);
      await page.fill('#confirm', password);
      await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
      await expect(page, 'Vaults');
    },
  },
  {
    name: 'vault-overview',
    async run(page) {
      await page.click('summary:has-text("Create a vault")');
      await page.fill('#vault-name', 'research');
      await Promise.all([page.waitForURL(/\/vaults\/research$/), page.click('form[action$="/vaults"] button')]);
      await expect(page, 'Vault research created');
    },
  },
  {
    name: 'plugins',
    async run(page) {
      await page.click('nav >> text=Plugins');
      await expect(page, 'Try a plugin');
      await expect(page, 'Sends the token as');
    },
  },
  {
    name: 'plugins-dry-run',
    async run(page) {
      await page.selectOption('#dry-plugin', 'bearer');
      await page.fill('#dry-url', 'https://api.example.com/v1/items');
      await page.fill('#dry-headers', 'Accept: application/json');
      await page.fill('#dry-credentials', 'token=sk_browser_made_up_41c7');
      await page.click('form[action*="/manage/plugins/test"] button[type=submit]');
      await expect(page, 'The request as it would leave');
      await expect(page, 'authorization: ****');
      if ((await page.content()).includes('sk_browser_made_up_41c7')) {
        throw new Error('the made-up credential is in the page');
      }
    },
  },
  {
    name: 'sign-out',
    async run(page) {
      await page.click('button:has-text("Sign out")');
      await expect(page, 'Sign in');
    },
  },
];

async function accessibility(page, name) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ['violations'] });
    return results.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.impact} ${v.id}: ${v.help}\n    ${v.nodes.map((n) => n.html + '\n      ' + n.failureSummary).join('\n    ')}`);
  });
  if (violations.length > 0) {
    throw new Error(`axe-core found on ${name}:\n  ${violations.join('\n  ')}`);
  }
}

async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 800 });
    await page.screenshot({ path: `${screenshots}/${name}-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

const browser = await chromium.launch({ executablePath: CHROMIUM, timeout: LAUNCH_TIMEOUT_MS, args: ['--no-sandbox'] });
const context = await browser.newContext({ javaScriptEnabled: javascript, viewport: { width: 1280, height: 800 } });
context.setDefaultTimeout(TIMEOUT_MS);
const page = await context.newPage();
let status = 0;
for (const step of STEPS) {
  try {
    await step.run(page);
    if (javascript) await accessibility(page, step.name);
    if (screenshots) await screenshot(page, step.name);
    console.log(`ok ${step.name}`);
  } catch (error) {
    const text = await page.innerText('body').catch(() => '(no page)');
    console.error(`step ${step.name} failed at ${page.url()}: ${error.message}\n--- page ---\n${text}`);
    status = 1;
    break;
  }
}
await browser.close();
process.exit(status);
