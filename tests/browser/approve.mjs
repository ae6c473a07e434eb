// Headless-browser half of the end-to-end test of the approval page: a human opens the
// approval link, logs in if asked, types the credentials and approves (or rejects) the
// proposal. JavaScript is off in the browser, because the page must work as plain HTML
// forms; this script is how the test proves it.
//
// Inputs (environment):
//   APPROVAL_URL  the approval link, e.g. http://127.0.0.1:PORT/approve/1?token=av_appr_...
//   EMAIL, PASSWORD  of the human who approves (used only if the page asks to log in)
//   CREDENTIALS   JSON object {"KEY": "secret value", ...} typed into credential:KEY inputs
//   ACTION        approve (default) or reject
//   REASON        optional rejection reason
//   SCREENSHOT    optional path of a full-page PNG of the filled-in form, taken just before
//                 submitting it (the secret inputs are password inputs: they show masked)
//
// Prints the text of #outcome (e.g. Approved or Rejected) on stdout as one line.
// Exit codes: 0 done; 1 an expected element is missing, the page shows #error, or a wait
// timed out (the page's visible text goes to stderr); 2 bad inputs; 3 the final page
// contains a credential value (the message names its KEY, never the value). That check
// looks for each value anywhere in the page's HTML, so give the test distinctive values
// (e.g. "sk-test-7f3a9c..."), not words that the page may contain anyway.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

// Generous: the tests run next to many others on two cores, and Chromium's start alone
// took more than 15 s in one such run.
const TIMEOUT_MS = 45_000;
const LAUNCH_TIMEOUT_MS = 90_000;
const CHROMIUM = '/usr/bin/chromium';

class Failure extends Error {
  constructor(message, code, { showPage = true } = {}) {
    super(message);
    this.code = code;
    this.showPage = showPage;
  }
}

function inputs() {
  const env = process.env;
  const usage = (message) => new Failure(message, 2, { showPage: false });
  if (!env.APPROVAL_URL) throw usage('APPROVAL_URL is not set');
  const action = env.ACTION || 'approve';
  if (action !== 'approve' && action !== 'reject') {
    throw usage(`ACTION must be approve or reject, not ${JSON.stringify(action)}`);
  }
  let credentials = {};
  if (env.CREDENTIALS) {
    try {
      credentials = JSON.parse(env.CREDENTIALS);
    } catch (e) {
      // The message of a JSON error can quote the text, which holds secrets: leave it out.
      throw usage('CREDENTIALS is not valid JSON');
    }
    const isObject = credentials && typeof credentials === 'object' && !Array.isArray(credentials);
    if (!isObject || !Object.values(credentials).every((v) => typeof v === 'string')) {
      throw usage('CREDENTIALS must be a JSON object of strings: {"KEY": "secret value", ...}');
    }
  }
  return {
    url: env.APPROVAL_URL,
    email: env.EMAIL,
    password: env.PASSWORD,
    credentials,
    action,
    reason: env.REASON || '',
    screenshot: env.SCREENSHOT || '',
  };
}

// Submits a form the way a person does, by clicking its submit button, and waits for the
// page it leads to (with JavaScript off, a submission is always a full navigation).
async function submit(page, form, what) {
  const button = form.locator(':is(button, input)[type=submit]').first();
  if ((await button.count()) === 0) throw new Failure(`${what} has no submit button`, 1);
  const navigated = page.waitForNavigation({ waitUntil: 'load', timeout: TIMEOUT_MS });
  await button.click();
  await navigated;
}

// The page is static (no JavaScript), so once it has loaded an element is there or not:
// look without waiting, so that a missing one fails at once rather than after a timeout.
async function expectOne(page, selector, what) {
  const found = page.locator(selector);
  if ((await found.count()) === 0) throw new Failure(`${what} (${selector}) is not on the page`, 1);
  return found.first();
}

async function failIfError(page, when) {
  const error = page.locator('#error');
  if ((await error.count()) > 0) {
    const text = (await error.first().innerText()).trim();
    throw new Failure(`the page shows an error ${when}: ${text}`, 1);
  }
}

// A secret must never be rendered back. page.content() serializes the DOM, so a value is
// looked for both as it is and HTML-escaped (as it would stand in text or an attribute).
function leakedKeys(html, credentials) {
  const escape = (s) =>
    s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  return Object.entries(credentials)
    .filter(([, value]) => value !== '' && (html.includes(value) || html.includes(escape(value))))
    .map(([key]) => key);
}

async function run(page, input) {
  await page.goto(input.url, { waitUntil: 'load', timeout: TIMEOUT_MS });
  await failIfError(page, 'on opening the approval link');

  const login = page.locator('form#login');
  if ((await login.count()) > 0) {
    if (!input.email || !input.password) {
      throw new Failure('the page asks to log in but EMAIL or PASSWORD is not set', 2);
    }
    const form = login.first();
    await (await expectOne(form, 'input[name=email]', 'the login email input')).fill(input.email);
    await (await expectOne(form, 'input[name=password]', 'the login password input')).fill(input.password);
    await submit(page, form, 'the login form');
    await failIfError(page, 'after logging in');
    if ((await page.locator('form#login').count()) > 0) {
      throw new Failure('the login form is still shown after logging in', 1);
    }
  }

  const approve = await expectOne(page, 'form#approve', 'the approve form');
  const reject = await expectOne(page, 'form#reject', 'the reject form');

  let form;
  if (input.action === 'approve') {
    for (const [key, value] of Object.entries(input.credentials)) {
      const selector = `input[name=${JSON.stringify(`credential:${key}`)}]`;
      await (await expectOne(approve, selector, `the input for credential ${key}`)).fill(value);
    }
    form = approve;
  } else {
    if (input.reason) {
      await (await expectOne(reject, 'textarea[name=reason]', 'the rejection reason')).fill(input.reason);
    }
    form = reject;
  }

  if (input.screenshot) {
    mkdirSync(dirname(input.screenshot), { recursive: true });
    await page.screenshot({ path: input.screenshot, fullPage: true, timeout: TIMEOUT_MS });
  }

  await submit(page, form, `the ${input.action} form`);

  const leaked = leakedKeys(await page.content(), input.credentials);
  if (leaked.length > 0) {
    throw new Failure(
      `the page after ${input.action === 'approve' ? 'approving' : 'rejecting'} contains the value of credential ${leaked.join(', ')}`,
      3,
    );
  }
  await failIfError(page, `after submitting the ${input.action} form`);
  const outcome = await expectOne(page, '#outcome', 'the outcome');
  console.log((await outcome.innerText()).replace(/\s+/g, ' ').trim());
}

// When the page shows a credential value, the page text is printed with the values blanked
// out. (Only then: a failure before the form is submitted cannot show a value, and
// blanking a short test value would garble the text.)
function redact(text, credentials) {
  let out = text;
  for (const [key, value] of Object.entries(credentials)) {
    if (value !== '') out = out.split(value).join(`[credential ${key}]`);
  }
  return out;
}

async function main() {
  let browser;
  let page;
  let input;
  try {
    input = inputs();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
      timeout: LAUNCH_TIMEOUT_MS,
    });
    const context = await browser.newContext({ javaScriptEnabled: false });
    context.setDefaultTimeout(TIMEOUT_MS);
    context.setDefaultNavigationTimeout(TIMEOUT_MS);
    page = await context.newPage();
    await run(page, input);
  } catch (e) {
    const failure = e instanceof Failure ? e : new Failure(e?.message ?? String(e), 1);
    // Playwright's messages can hold colour codes: a test log is plain text.
    console.error(`approve.mjs: ${failure.message.replace(/\x1b\[[0-9;]*m/g, '')}`);
    if (page && failure.showPage) {
      // A failing Rust test shows this: what a person would see on the page.
      let text;
      try {
        text = await page.locator('body').innerText({ timeout: 2_000 });
      } catch {
        text = '(could not read the page)';
      }
      if (failure.code === 3) text = redact(text, input?.credentials ?? {});
      console.error(`--- page ${page.url()} ---\n${text}\n--- end of page ---`);
    }
    process.exitCode = failure.code;
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
}

await main();
