// gpt_auth e2e: after a logout, the browser must not show a protected page again from its own
// cache. Driven by t/gpt_auth_browser_cache.t against nginx on http://localhost (a real origin
// for Chromium's HTTP cache: no certificate errors, which would keep responses out of it).
//
//   node cache-after-logout.mjs --base http://localhost:PORT --cookie NAME=VALUE
//        --content TEXT --chromium /usr/bin/chromium [--prefix app]   (the page: /PREFIX/page.html)
//
// Prints one line per step: "step NAME: shown" or "step NAME: not shown" (whether the
// protected text was visible), plus "header Cache-Control: ...". Exits 0 when every step ran
// (whatever they found: the .t judges), 1 on a browser error.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

// playwright-core is installed with the test provider (t/oidc/package.json).
const require = createRequire(new URL('../oidc/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const { values: opt } = parseArgs({
  options: {
    base: { type: 'string' },
    cookie: { type: 'string' },
    content: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    prefix: { type: 'string', default: 'app' },
    // "url": GET /logout on this site; "cookies": the session cookie disappears as when the
    // logout happens on another origin (the login site), which clears nothing here.
    'logout-by': { type: 'string', default: 'url' },
  },
});
const page = `${opt.base}/${opt.prefix}/page.html`;
const [cookieName, ...rest] = opt.cookie.split('=');
const dir = mkdtempSync(join(tmpdir(), 'gpt-auth-cache-'));
let context;
try {
  context = await chromium.launchPersistentContext(dir, {
    executablePath: opt.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await context.addCookies([{ name: cookieName, value: rest.join('='), url: opt.base }]);
  const p = context.pages()[0] ?? await context.newPage();
  const shown = async () => (await p.getByText(opt.content).count()) > 0;
  const step = async (name, fn) => {
    await fn();
    await p.waitForLoadState('load');
    console.log(`step ${name}: ${(await shown()) ? 'shown' : 'not shown'} at ${p.url()}`);
  };
  await step('signed-in', async () => {
    const resp = await p.goto(page);
    console.log(`header Cache-Control: ${(await resp.allHeaders())['cache-control'] ?? '(none)'}`);
  });
  await step('logout', async () => {
    if (opt['logout-by'] === 'cookies') {
      await context.clearCookies();
      await p.goto(`${opt.base}/login-page`);
    } else {
      await p.goto(`${opt.base}/logout`);
    }
  });
  await step('back', () => p.goBack());
  await step('again', () => p.goto(page));
  await context.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
} catch (err) {
  console.log(`error: ${err.message.split('\n')[0]}`);
  if (context) await context.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}
