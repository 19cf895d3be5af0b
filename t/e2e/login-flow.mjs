#!/usr/bin/env node
// Real-browser end-to-end driver for gpt_auth: Debian's Chromium through playwright-core (installed
// in t/oidc/node_modules), against nginx + gpt_auth + the test OpenID provider (t/oidc/provider.mjs).
//
//   node t/e2e/login-flow.mjs --port 8443 --out DIR --content 'TEXT' \
//       --email alice@corp.test --password alice-pw \
//       --denied-email mallory@evil.test --denied-password mallory-pw
//
// Every option also reads an environment variable (E2E_<NAME>, upper case, - as _):
//   --port N              nginx's https port; gives the URL defaults below
//   --protected-url URL   default https://gpt4.corp.test:PORT/chat
//   --second-url URL      default https://gpt.corp.test:PORT/
//   --login-url URL       default https://auth.corp.test:PORT/login  (the login page, without ?rd=)
//   --logout-url URL      default https://auth.corp.test:PORT/logout
//   --content TEXT        text visible on the protected page (required)
//   --second-content TEXT text visible on the second site (default: --content)
//   --email, --password   an allowed user at the provider (required)
//   --denied-email, --denied-password   a user the provider knows but gpt_auth does not allow
//                         (both required unless --skip-denied)
//   --cookie NAME         session cookie name (default gpt_auth)
//   --cookie-domain D     expected cookie Domain (default corp.test; .corp.test also accepted)
//   --out DIR             screenshots and failure artifacts (default t/out/e2e, gitignored)
//   --timeout MS          per-step timeout (default 15000)
//   --total-timeout MS    whole run (default 180000)
//   --chromium PATH       default /usr/bin/chromium
//   --resolver-rules R    default "MAP *.corp.test 127.0.0.1, EXCLUDE 127.0.0.1, EXCLUDE localhost"
//   --skip-denied         skip part (f)
//   --verbose, -v         print every main-frame response as a TAP comment
//
// Prints TAP ("ok N - ...", "not ok N - ... # details", then "1..N"); exits 1 if a check failed,
// 2 on a usage or browser launch error. On a failed check it saves fail-N.png and fail-N.html.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const require = createRequire(new URL('../oidc/package.json', import.meta.url));
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (err) {
  process.stderr.write(`login-flow.mjs: playwright-core not found (run "npm ci" in t/oidc): ${err.message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Options

const spec = {
  port: { type: 'string' },
  'protected-url': { type: 'string' },
  'second-url': { type: 'string' },
  'login-url': { type: 'string' },
  'logout-url': { type: 'string' },
  content: { type: 'string' },
  'second-content': { type: 'string' },
  email: { type: 'string' },
  password: { type: 'string' },
  'denied-email': { type: 'string' },
  'denied-password': { type: 'string' },
  cookie: { type: 'string', default: 'gpt_auth' },
  'cookie-domain': { type: 'string', default: 'corp.test' },
  out: { type: 'string', default: fileURLToPath(new URL('../out/e2e', import.meta.url)) },
  timeout: { type: 'string', default: '15000' },
  'total-timeout': { type: 'string', default: '180000' },
  chromium: { type: 'string', default: '/usr/bin/chromium' },
  'resolver-rules': { type: 'string', default: 'MAP *.corp.test 127.0.0.1, EXCLUDE 127.0.0.1, EXCLUDE localhost' },
  'skip-denied': { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
};

function usage(msg) {
  if (msg) process.stderr.write(`login-flow.mjs: ${msg}\n`);
  process.stderr.write('usage: node t/e2e/login-flow.mjs --port N --content TEXT --email E --password P '
    + '--denied-email E --denied-password P [--out DIR] [options; see the header of this file]\n');
  process.exit(msg ? 2 : 0);
}

let cli;
try {
  ({ values: cli } = parseArgs({ options: spec, allowPositionals: false }));
} catch (err) {
  usage(err.message);
}
if (cli.help) usage();

const opt = {};
for (const [name, s] of Object.entries(spec)) {
  const env = process.env[`E2E_${name.toUpperCase().replace(/-/g, '_')}`];
  const fromCli = process.argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`)
    || (s.short && a === `-${s.short}`));
  if (fromCli) opt[name] = cli[name];
  else if (env !== undefined) opt[name] = s.type === 'boolean' ? !['', '0', 'false', 'no'].includes(env) : env;
  else opt[name] = cli[name];
}

const port = opt.port;
const dflt = (host, path) => (port ? `https://${host}:${port}${path}` : undefined);
const protectedUrl = opt['protected-url'] ?? dflt('gpt4.corp.test', '/chat');
const secondUrl = opt['second-url'] ?? dflt('gpt.corp.test', '/');
const loginUrl = opt['login-url'] ?? dflt('auth.corp.test', '/login');
const logoutUrl = opt['logout-url'] ?? dflt('auth.corp.test', '/logout');
const content = opt.content;
const secondContent = opt['second-content'] ?? content;
const cookieName = opt.cookie;
const cookieDomain = opt['cookie-domain'].replace(/^\./, '');
const outDir = resolve(opt.out);
const stepTimeout = Number(opt.timeout);
const totalTimeout = Number(opt['total-timeout']);
const verbose = opt.verbose;
const skipDenied = opt['skip-denied'];

for (const [k, v] of Object.entries({
  'protected-url (or --port)': protectedUrl,
  'second-url (or --port)': secondUrl,
  'login-url (or --port)': loginUrl,
  'logout-url (or --port)': logoutUrl,
  content,
  email: opt.email,
  password: opt.password,
  ...(skipDenied ? {} : { 'denied-email': opt['denied-email'], 'denied-password': opt['denied-password'] }),
})) {
  if (v === undefined || v === '') usage(`--${k} is required`);
}
if (!(stepTimeout > 0) || !(totalTimeout > 0)) usage('bad --timeout or --total-timeout');

mkdirSync(outDir, { recursive: true });

// ---------------------------------------------------------------------------------------------
// TAP and artifacts

let n = 0;
let failed = 0;
const trail = []; // recent main-frame responses [seq, line], dumped on failure
let trailSeq = 0;
let trailShown = 0; // last seq already printed

function comment(text) {
  for (const line of String(text).split('\n')) console.log(`# ${line}`);
}

let page;
let context;

async function saveArtifacts(tag) {
  if (!page || page.isClosed()) return;
  try {
    await page.screenshot({ path: join(outDir, `${tag}.png`), fullPage: true, timeout: 5000 });
  } catch (err) {
    comment(`screenshot ${tag}.png failed: ${err.message.split('\n')[0]}`);
  }
  try {
    const html = await Promise.race([page.content(), new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), 5000))]);
    writeFileSync(join(outDir, `${tag}.html`), `<!-- ${page.url()} -->\n${html}`);
  } catch (err) {
    comment(`saving ${tag}.html failed: ${err.message.split('\n')[0]}`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]);
}

const passed = []; // check number -> boolean

// Runs fn (actions + assertion) under a hard timeout; fn returns true, or a string saying what
// is wrong, or throws. One TAP line per call. A check whose prerequisites (`needs`: check
// numbers) failed is reported as failed at once, without waiting for its timeouts.
// Returns the check's number.
async function check(desc, fn, { timeout = stepTimeout * 2, needs = [] } = {}) {
  n += 1;
  const unmet = needs.filter((id) => !passed[id]);
  if (unmet.length) {
    failed += 1;
    passed[n] = false;
    console.log(`not ok ${n} - ${desc} # not run: needs check ${unmet.join(', ')}`);
    return n;
  }
  let result;
  try {
    result = await withTimeout(Promise.resolve().then(fn), timeout, desc);
  } catch (err) {
    result = err.message.replace(/\x1b\[[0-9;]*m/g, '').split('\n').slice(0, 3).join(' ');
  }
  if (result === true) {
    passed[n] = true;
    console.log(`ok ${n} - ${desc}`);
    return n;
  }
  passed[n] = false;
  failed += 1;
  const url = page && !page.isClosed() ? page.url() : '(no page)';
  console.log(`not ok ${n} - ${desc} # ${result || 'failed'} (at ${url})`);
  const fresh = trail.filter(([seq]) => seq > trailShown).slice(-8);
  comment(`navigations since the last report:\n${fresh.map(([, l]) => l).join('\n') || '(none)'}`);
  trailShown = trailSeq;
  await saveArtifacts(`fail-${n}`);
  comment(`saved ${join(outDir, `fail-${n}.png`)} and .html`);
  return n;
}

function skip(desc, why) {
  n += 1;
  console.log(`ok ${n} - ${desc} # SKIP ${why}`);
}

// ---------------------------------------------------------------------------------------------
// Helpers

function sameUrl(a, b) {
  try {
    return new URL(a).href === new URL(b).href;
  } catch {
    return false;
  }
}

function isLoginPage(u) {
  const url = new URL(u);
  const login = new URL(loginUrl);
  return url.origin === login.origin && url.pathname === login.pathname;
}

async function goto(url) {
  await page.goto(url, { waitUntil: 'load', timeout: stepTimeout });
}

async function bodyText() {
  return page.locator('body').innerText({ timeout: stepTimeout });
}

function signInControl() {
  return page.locator('a, button, input[type="submit"], input[type="button"]')
    .filter({ visible: true })
    .filter({ hasText: /sign in/i })
    .or(page.locator('input[type="submit"][value*="Sign in" i], input[type="button"][value*="Sign in" i]'))
    .first();
}

function signOutControl() {
  return page.locator('a, button, input[type="submit"]')
    .filter({ hasText: /sign[\s-]?out|log[\s-]?out/i })
    .or(page.locator('input[type="submit"][value*="Sign out" i], input[type="submit"][value*="Log out" i]'))
    .first();
}

// The provider's login form: a form with a password field.
function providerForm() {
  return page.locator('form').filter({ has: page.locator('input[type="password"]') }).first();
}

async function providerLogin(email, password) {
  const form = providerForm();
  await form.locator('input[name="email"], input[name="username"], input[type="email"]').first().fill(email, { timeout: stepTimeout });
  await form.locator('input[type="password"]').first().fill(password, { timeout: stepTimeout });
  await form.locator('button[type="submit"], input[type="submit"], button:not([type])').first().click({ timeout: stepTimeout, noWaitAfter: true });
}

// After a logout: wait until the browser is on the login page. If an OpenID provider asks on the
// way to confirm an RP-initiated logout (oidc-provider's end_session form), confirm it once.
async function arriveAtLoginAfterLogout(what) {
  const deadline = Date.now() + stepTimeout;
  let confirmed = false;
  const yes = page.locator('button[form="op.logoutForm"][name="logout"], form[id="op.logoutForm"] [name="logout"]').first();
  while (Date.now() < deadline) {
    if (isLoginPage(page.url())) {
      await page.waitForLoadState('load', { timeout: stepTimeout });
      return;
    }
    if (!confirmed && await yes.isVisible().catch(() => false)) {
      comment('confirming the provider\'s logout prompt');
      await yes.click({ timeout: stepTimeout, noWaitAfter: true });
      confirmed = true;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`${what}; ended at ${page.url()}`);
}

async function waitForUrl(pred, what) {
  await page.waitForURL((u) => pred(u.href), { timeout: stepTimeout, waitUntil: 'load' })
    .catch((err) => { throw new Error(`${what}; ended at ${page.url()} (${err.message.split('\n')[0]})`); });
}

async function sessionCookies() {
  return (await context.cookies()).filter((c) => c.name === cookieName);
}

// The cookie's SameSite attribute as the server sent it: Playwright reports a cookie without the
// attribute as "Lax" (Chromium's default), the DevTools protocol leaves it out.
async function rawSameSite(c) {
  const cdp = await context.newCDPSession(page);
  try {
    const { cookies } = await cdp.send('Storage.getCookies');
    const raw = cookies.find((r) => r.name === c.name && r.domain === c.domain && r.path === c.path);
    if (!raw) return undefined;
    return raw.sameSite ?? '(not set)';
  } finally {
    await cdp.detach().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Run

const userDataDir = mkdtempSync(join(tmpdir(), 'gpt-auth-e2e-profile-'));
let finished = false;

async function finish(code) {
  if (finished) return;
  finished = true;
  try {
    if (context) await withTimeout(context.close(), 10_000, 'closing the browser');
  } catch (err) {
    comment(err.message);
  }
  rmSync(userDataDir, { recursive: true, force: true });
  console.log(`1..${n}`);
  if (code === 0 && failed) code = 1;
  if (failed) comment(`${failed} of ${n} checks failed; artifacts in ${outDir}`);
  process.exit(code);
}

const watchdog = setTimeout(async () => {
  n += 1;
  failed += 1;
  console.log(`not ok ${n} - whole run finished in time # exceeded ${totalTimeout} ms`);
  await saveArtifacts(`fail-${n}`).catch(() => {});
  await finish(1);
}, totalTimeout);

try {
  context = await withTimeout(chromium.launchPersistentContext(userDataDir, {
    executablePath: opt.chromium,
    headless: true,
    ignoreHTTPSErrors: true,
    acceptDownloads: false,
    viewport: { width: 1100, height: 800 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=${opt['resolver-rules']}`,
    ],
  }), 30_000, 'launching chromium');
} catch (err) {
  console.log(`not ok 1 - launch ${opt.chromium} # ${err.message.split('\n')[0]}`);
  console.log('1..1');
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(2);
}

context.setDefaultTimeout(stepTimeout);
context.setDefaultNavigationTimeout(stepTimeout);
page = context.pages()[0] ?? await context.newPage();
comment(`chromium ${context.browser()?.version() ?? ''} (${opt.chromium}), profile ${userDataDir}`);
page.on('response', (res) => {
  if (res.frame() !== page.mainFrame() || res.request().resourceType() !== 'document') return;
  const loc = res.headers().location;
  const line = `${res.status()} ${res.request().method()} ${res.url()}${loc ? ` -> ${loc}` : ''}`;
  trailSeq += 1;
  trail.push([trailSeq, line]);
  if (trail.length > 50) trail.shift();
  if (verbose) comment(line);
});
page.on('pageerror', (err) => { if (verbose) comment(`page error: ${err.message}`); });

// (a) The protected URL sends an anonymous browser to the login page.
const cLogin = await check(`anonymous ${protectedUrl} lands on the login page ${loginUrl}`, async () => {
  await goto(protectedUrl);
  await waitForUrl(isLoginPage, 'expected the login page');
  return true;
});
await check('login page carries rd= pointing back to the protected URL', async () => {
  const rd = new URL(page.url()).searchParams.get('rd');
  if (!rd) return `no rd parameter in ${page.url()}`;
  return sameUrl(new URL(rd, page.url()).href, protectedUrl) || `rd=${rd}`;
}, { needs: [cLogin] });
const cButton = await check('login page has a "Sign in" button or link', async () => {
  await signInControl().waitFor({ state: 'visible', timeout: stepTimeout });
  return true;
}, { needs: [cLogin] });
await saveArtifacts('login');

// (b) Sign in at the provider as an allowed user.
const cForm = await check('"Sign in" leads to the provider\'s login form', async () => {
  await signInControl().click({ timeout: stepTimeout, noWaitAfter: true });
  await providerForm().locator('input[type="password"]').waitFor({ state: 'visible', timeout: stepTimeout });
  return true;
}, { needs: [cButton] });
const cSignedIn = await check(`allowed user ${opt.email} signs in and returns to ${protectedUrl}`, async () => {
  await providerLogin(opt.email, opt.password);
  await waitForUrl((u) => sameUrl(u, protectedUrl), `expected ${protectedUrl}`);
  return true;
}, { needs: [cForm] });
await check(`protected content "${content}" is shown`, async () => {
  await page.getByText(content).first().waitFor({ state: 'visible', timeout: stepTimeout });
  return true;
}, { needs: [cSignedIn] });

await check('protected page is sent with Cache-Control "private, no-store"', async () => {
  const resp = await page.goto(protectedUrl, { waitUntil: 'load', timeout: stepTimeout });
  const cc = resp ? (await resp.allHeaders())['cache-control'] : undefined;
  return cc === 'private, no-store' || `Cache-Control: ${cc}`;
}, { needs: [cSignedIn] });

// (c) The session cookie.
let cookie;
const cCookie = await check(`session cookie ${cookieName} is set`, async () => {
  const all = await sessionCookies();
  if (all.length !== 1) {
    return `${all.length} cookies named ${cookieName}: ${JSON.stringify(all.map((c) => ({ domain: c.domain, path: c.path })))}`;
  }
  [cookie] = all;
  return true;
});
await check(`session cookie domain is .${cookieDomain}`, async () => {
  if (!cookie) return 'no cookie';
  return cookie.domain.replace(/^\./, '') === cookieDomain || `domain ${cookie.domain}`;
}, { needs: [cCookie] });
await check('session cookie is HttpOnly', async () => cookie?.httpOnly === true || `httpOnly ${cookie?.httpOnly}`, { needs: [cCookie] });
await check('session cookie is Secure', async () => cookie?.secure === true || `secure ${cookie?.secure}`, { needs: [cCookie] });
await check('session cookie is SameSite=Lax (explicitly)', async () => {
  if (!cookie) return 'no cookie';
  const raw = await rawSameSite(cookie);
  return raw === 'Lax' || `SameSite ${raw ?? cookie.sameSite}`;
}, { needs: [cCookie] });

// (d) Another subdomain accepts the session without a new login.
await check(`second site ${secondUrl} shows "${secondContent}" without signing in again`, async () => {
  await goto(secondUrl);
  await page.waitForLoadState('load', { timeout: stepTimeout });
  if (!sameUrl(page.url(), secondUrl)) return `ended at ${page.url()}`;
  await page.getByText(secondContent).first().waitFor({ state: 'visible', timeout: stepTimeout });
  return true;
});

// (e) Logout.
const cLogout = await check(`logout ${logoutUrl} lands on the login page`, async () => {
  await goto(logoutUrl);
  await arriveAtLoginAfterLogout('expected the login page');
  return true;
});
await check(`session cookie ${cookieName} is gone after logout`, async () => {
  const all = await sessionCookies();
  return all.length === 0 || `still there: ${JSON.stringify(all.map((c) => ({ domain: c.domain, value: `${c.value.slice(0, 12)}...` })))}`;
}, { needs: [cCookie, cLogout] });
await check('protected URL after logout lands on the login page again', async () => {
  await goto(protectedUrl);
  await waitForUrl(isLoginPage, 'expected the login page');
  if (await page.getByText(content).count()) return 'protected content is visible';
  return true;
});

// (f) A user the provider knows but gpt_auth does not allow.
if (skipDenied) {
  for (const d of ['not-allowed user reaches the provider form', 'not-allowed page', 'sign-out link',
    'sign-out lands on the login page', 'protected content stays hidden']) {
    skip(d, '--skip-denied');
  }
} else {
  const denied = opt['denied-email'];
  const cDeniedForm = await check(`not-allowed user ${denied}: protected URL -> login page -> provider form`, async () => {
    // Forget the provider's own session (gpt_auth's logout does not end it), keeping cookies on the
    // shared domain, so the provider asks for credentials again.
    const keep = (await context.cookies()).filter((c) => c.domain.replace(/^\./, '') === cookieDomain && c.domain.startsWith('.'));
    await context.clearCookies();
    if (keep.length) await context.addCookies(keep);
    await goto(protectedUrl);
    await waitForUrl(isLoginPage, 'expected the login page');
    await signInControl().click({ timeout: stepTimeout, noWaitAfter: true });
    await providerForm().locator('input[type="password"]').waitFor({ state: 'visible', timeout: stepTimeout });
    return true;
  }, { needs: [cLogin] });
  const cDenied = await check(`not-allowed user: page says "not allowed" and shows ${denied}`, async () => {
    await providerLogin(denied, opt['denied-password']);
    await page.waitForURL((u) => !u.href.includes('/interaction/'), { timeout: stepTimeout, waitUntil: 'load' });
    await page.getByText(/not allowed/i).first().waitFor({ state: 'visible', timeout: stepTimeout });
    const text = await bodyText();
    if (!text.includes(denied)) return `email not on the page: ${text.slice(0, 200).replace(/\s+/g, ' ')}`;
    if (text.includes(content) && sameUrl(page.url(), protectedUrl)) return 'protected content is shown';
    return true;
  }, { needs: [cDeniedForm] });
  await saveArtifacts('not-allowed');
  let signOutHref;
  const cSignOut = await check('not-allowed page offers a sign-out link', async () => {
    const c = signOutControl();
    await c.waitFor({ state: 'visible', timeout: stepTimeout });
    signOutHref = await c.getAttribute('href');
    return true;
  }, { needs: [cDenied] });
  await check('following the sign-out link lands on the login page', async () => {
    const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame(), timeout: stepTimeout });
    await signOutControl().click({ timeout: stepTimeout, noWaitAfter: true });
    await navigated;
    await arriveAtLoginAfterLogout(`expected the login page (link ${signOutHref ?? '(a button)'})`);
    return true;
  }, { needs: [cSignOut] });
  await check('not-allowed user does not get the protected content', async () => {
    await goto(protectedUrl);
    await page.waitForLoadState('load', { timeout: stepTimeout });
    const visible = await page.getByText(content).first().isVisible();
    return !visible || `protected content shown at ${page.url()}`;
  });
}

clearTimeout(watchdog);
await finish(failed ? 1 : 0);
