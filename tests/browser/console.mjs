// The web console in a real browser: a person's walk through the pages that exist, run once
// with JavaScript on and once off (every form must work without it). On every page the walk
// reaches with JavaScript on, axe-core checks accessibility; any serious or critical
// violation fails the walk. With SCREENSHOT_DIR set, each page is saved there at 1280 and
// 390 px wide (NAME-1280.png, NAME-390.png).
//
// Inputs (environment):
//   BASE_URL        the server, e.g. http://127.0.0.1:PORT (no owner registered yet)
//   UPSTREAM_PORT   the port of the recording HTTPS upstream the server reaches as
//                   api.test.example, uploads.test.example and other.test.example
//   EMAIL, PASSWORD the owner the walk registers
//   SECRET          the credential value the owner types (never shown back: checked)
//   JAVASCRIPT      on (default) or off
//   SCREENSHOT_DIR  optional: where to save the screenshots
//
// Prints one line per step ("ok NAME"), and exits 1 with what went wrong (and the page's
// text) when a step fails or axe finds a serious or critical violation. JavaScript off, axe
// cannot run in the page; the walk with JavaScript on visits the same pages.
//
// To add a page: add a step to STEPS. A step opens or submits something, then `expect`s
// what a person reads there.

import { execFileSync } from 'node:child_process';
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
const upstreamPort = process.env.UPSTREAM_PORT;
const secret = process.env.SECRET;
if (!base || !email || !password || !upstreamPort || !secret) {
  console.error('BASE_URL, UPSTREAM_PORT, EMAIL, PASSWORD and SECRET are required');
  process.exit(2);
}

/// An agent's request with curl, as an agent runs it: the HTTP status and the body.
function curl(method, path, token, { vault, json } = {}) {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', method, '-H', `Authorization: Bearer ${token}`];
  if (vault) args.push('-H', `X-Vault: ${vault}`);
  if (json) args.push('-H', 'Content-Type: application/json', '--data', JSON.stringify(json));
  const out = execFileSync('curl', [...args, `${base}${path}`], { encoding: 'utf8' });
  const at = out.lastIndexOf('\n');
  return { status: Number(out.slice(at + 1)), body: out.slice(0, at) };
}

/// A proxied request to an upstream name through the explicit ingress.
function proxied(name, path, token, vault) {
  return curl('GET', `/proxy/${name}:${upstreamPort}${path}`, token, { vault });
}

function expectStatus(answer, status, what) {
  if (answer.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${answer.status} ${answer.body}`);
  }
}

/// Fails the step if the credential value the owner typed is anywhere in the page.
async function secretNotShown(page) {
  if ((await page.content()).includes(secret)) throw new Error('the credential value is in the page');
}

/// Opens a <details> element (a folded form) unless it is open already.
async function open(page, selector) {
  const details = page.locator(selector).first();
  if (!(await details.evaluate((node) => node.open))) {
    await details.locator('summary').first().click();
  }
}

/// What the walk learns on the way (tokens shown once, a proposal's id).
const seen = {};

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
    name: 'credentials',
    async run(page) {
      await page.goto(`${base}/vaults/research/credentials`);
      await page.fill('#credential-key', 'STRIPE_KEY');
      await page.fill('#credential-value', secret);
      await page.click('button:has-text("Set credential")');
      await expect(page, 'STRIPE_KEY');
      await secretNotShown(page);
    },
  },
  {
    name: 'service-bearer',
    async run(page) {
      await page.goto(`${base}/vaults/research/services/new`);
      await page.fill('#service-name', 'stripe');
      await page.fill('#service-host', 'api.test.example');
      await page.check('#service-enabled');
      await page.selectOption('#auth-type', 'bearer');
      await page.fill('#bearer-token', 'STRIPE_KEY');
      await page.click('button:has-text("Add service")');
      await expect(page, 'Service stripe added');
    },
  },
  {
    name: 'service-plugin',
    async run(page) {
      await page.goto(`${base}/vaults/research/services/new`);
      await page.fill('#service-name', 'uploads');
      await page.fill('#service-host', 'uploads.test.example');
      await page.check('#service-enabled');
      await page.selectOption('#auth-type', 'plugin');
      const picker = page.locator('#plugin-name');
      if ((await picker.evaluate((node) => node.tagName)) === 'SELECT') {
        await picker.selectOption('hmac');
      } else {
        await picker.fill('hmac');
      }
      await page.fill('#plugin-config', 'signature-header=x-signature');
      await page.fill('#plugin-slots', 'secret=STRIPE_KEY');
      await page.click('button:has-text("Add service")');
      await expect(page, 'Service uploads added');
      await secretNotShown(page);
    },
  },
  {
    name: 'token',
    async run(page) {
      await page.goto(`${base}/vaults/research/tokens`);
      await page.fill('#token-label', 'browser walk');
      await page.click('button:has-text("Mint token")');
      seen.token = (await page.textContent('#new-token')).trim();
      if (!seen.token.startsWith('av_')) throw new Error(`no token shown: ${seen.token}`);
    },
  },
  {
    name: 'request-log',
    async run(page) {
      await page.goto(`${base}/vaults/research/logs`);
      await expect(page, 'No requests yet');
      expectStatus(proxied('api.test.example', '/v1/charges', seen.token), 200, 'the bearer service');
      expectStatus(proxied('uploads.test.example', '/v2/files', seen.token), 200, 'the plugin service');
      if (!javascript) {
        // Without the script, a reload shows the new rows once the log's writer has stored
        // them (it writes in batches, within moments).
        for (let tries = 0; tries < 40 && !(await page.content()).includes('/v2/files'); tries++) {
          await page.waitForTimeout(250);
          await page.goto(`${base}/vaults/research/logs`);
        }
      }
      // With it, they appear in the open page (polled every few seconds).
      await expect(page, '/v1/charges');
      await expect(page, '/v2/files');
    },
  },
  {
    name: 'agent',
    async run(page) {
      await page.goto(`${base}/agents`);
      await open(page, 'details:has(#agent-name)');
      await page.fill('#agent-name', 'build-bot');
      await page.click('form[action$="/agents"] button[type=submit]');
      seen.agent = (await page.textContent('#agent-token')).trim();
      await page.goto(`${base}/vaults/research/access`);
      await page.fill('#add-agent', 'build-bot');
      await page.selectOption('#add-agent-role', 'proxy');
      await page.click('form[action$="/access/agents"] button[type=submit]');
      await expect(page, 'build-bot');
      const refused = proxied('other.test.example', '/v1/items', seen.agent, 'research');
      expectStatus(refused, 403, 'a host no service covers');
      if (!refused.body.includes('proposal_hint')) throw new Error(`no proposal hint: ${refused.body}`);
    },
  },
  {
    name: 'proposal',
    async run(page) {
      const proposed = curl('POST', '/v1/proposals', seen.agent, {
        vault: 'research',
        json: {
          services: [{ name: 'items', host: 'other.test.example', auth: { type: 'bearer', token: 'ITEMS_KEY' } }],
          credentials: [{ key: 'ITEMS_KEY', description: 'The items API key' }],
          message: 'I need to read the items API',
        },
      });
      expectStatus(proposed, 201, 'the proposal');
      const id = JSON.parse(proposed.body).id;
      await page.goto(`${base}/vaults/research/proposals`);
      await page.click(`a[href$="/proposals/${id}"]`);
      await expect(page, 'I need to read the items API');
      await page.fill('form[action$="/approve"] input[type=password]', `${secret}-items`);
      await page.click('form[action$="/approve"] button[type=submit]');
      await expect(page, `Proposal ${id} approved`);
      if ((await page.content()).includes(`${secret}-items`)) throw new Error('the approved value is in the page');
      expectStatus(proxied('other.test.example', '/v1/items', seen.agent, 'research'), 200, 'the approved service');
    },
  },
  {
    name: 'revoke-agent',
    async run(page) {
      await page.goto(`${base}/agents`);
      const row = page.locator('tr', { hasText: 'build-bot' });
      await open(row, 'details.manage');
      await open(row, 'details.confirm:has(form[action$="/revoke"])');
      await row.locator('form[action$="/agents/build-bot/revoke"] button[type=submit]').click();
      await expect(page, 'revoked');
      const after = proxied('other.test.example', '/v1/items', seen.agent, 'research');
      if (after.status < 400) throw new Error(`a revoked agent's request went through: ${after.status}`);
    },
  },
  {
    name: 'vault-traffic',
    async run(page) {
      await page.goto(`${base}/vaults/research`);
      await expect(page, 'Traffic');
      await expect(page, '2xx: 3');
    },
  },
  {
    name: 'users',
    async run(page) {
      await page.click('nav >> text=Users');
      await expect(page, email);
    },
  },
  {
    name: 'account',
    async run(page) {
      await page.click(`a:has-text("${email}")`);
      await expect(page, 'Change your password');
    },
  },
  {
    name: 'instance',
    async run(page) {
      await page.click('nav >> text=Instance');
      await expect(page, 'Rate limits');
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
