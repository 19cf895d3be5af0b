#!/usr/bin/env node
// Proves t/oidc/provider.mjs works without nginx: starts it on a free port and plays a relying
// party with Node's fetch (manual redirects, a small cookie jar), as the Perl suite does over raw
// HTTP. Prints TAP; exits non-zero on any failure.
//
//   node t/oidc/selfcheck.mjs [-v]

import { spawn } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const verbose = process.argv.includes('-v');
const STEP_TIMEOUT = 10_000;

// ---------------------------------------------------------------------------------------------
// TAP

let n = 0;
let failed = 0;
function ok(cond, desc, details) {
  n += 1;
  if (cond) {
    console.log(`ok ${n} - ${desc}`);
  } else {
    failed += 1;
    console.log(`not ok ${n} - ${desc}${details !== undefined ? ` # ${details}` : ''}`);
  }
  return cond;
}
function is(got, want, desc) {
  return ok(got === want, desc, `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}
function note(msg) {
  if (verbose) console.log(`# ${msg}`);
}

// ---------------------------------------------------------------------------------------------
// Helpers

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const rand = () => b64url(randomBytes(24));
const newFlow = () => ({ state: rand(), nonce: rand(), verifier: b64url(randomBytes(48)) });

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A tiny cookie jar: name + path scoped, host-only (everything here is one host).
class Jar {
  constructor() {
    this.cookies = new Map(); // `${name}\0${path}` -> { name, value, path, attrs }
    this.seen = []; // every Set-Cookie header received, for attribute checks
  }

  store(url, res) {
    for (const line of res.headers.getSetCookie()) {
      this.seen.push(line);
      const [pair, ...attrParts] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const attrs = {};
      for (const a of attrParts) {
        const i = a.indexOf('=');
        const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
        attrs[k] = i < 0 ? true : a.slice(i + 1).trim();
      }
      const path = typeof attrs.path === 'string' ? attrs.path : new URL(url).pathname.replace(/\/[^/]*$/, '') || '/';
      const key = `${name}\0${path}`;
      const expired = (attrs['max-age'] !== undefined && Number(attrs['max-age']) <= 0)
        || (attrs.expires && Date.parse(attrs.expires) <= Date.now());
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path, attrs });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    const out = [];
    for (const c of this.cookies.values()) {
      const match = p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`);
      if (match) out.push(`${c.name}=${c.value}`);
    }
    return out.join('; ');
  }
}

async function request(jar, url, opts = {}) {
  const headers = { ...(opts.headers ?? {}) };
  const cookie = jar?.header(url);
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, {
    ...opts,
    headers,
    redirect: 'manual',
    signal: AbortSignal.timeout(STEP_TIMEOUT),
  });
  jar?.store(url, res);
  const text = await res.text();
  note(`${opts.method ?? 'GET'} ${url} -> ${res.status}${res.headers.get('location') ? ` ${res.headers.get('location')}` : ''}`);
  return { status: res.status, headers: res.headers, text, url };
}

// Follow redirects (relative to the current URL) until a non-redirect, or until the Location
// starts with stopAt (the client's redirect_uri, which has no server here).
async function follow(jar, first, stopAt, max = 10) {
  let r = first;
  for (let i = 0; i < max; i += 1) {
    if (![301, 302, 303, 307, 308].includes(r.status)) return { page: r };
    const loc = new URL(r.headers.get('location'), r.url).href;
    if (loc.startsWith(stopAt)) return { redirect: new URL(loc) };
    r = await request(jar, loc);
  }
  throw new Error('too many redirects');
}

function formAction(html, baseUrl) {
  const m = /<form[^>]*\bmethod="post"[^>]*\baction="([^"]+\/login)"/i.exec(html);
  return m ? new URL(m[1].replace(/&amp;/g, '&'), baseUrl).href : undefined;
}

function decodeJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url')),
    payload: JSON.parse(Buffer.from(p, 'base64url')),
    signingInput: Buffer.from(`${h}.${p}`),
    signature: Buffer.from(s, 'base64url'),
  };
}

function basic(id, secret) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

// ---------------------------------------------------------------------------------------------
// Set up

const dir = mkdtempSync(join(tmpdir(), 'oidc-selfcheck-'));
const port = await freePort();
const issuer = `http://127.0.0.1:${port}`;
const rpBasic = {
  client_id: 'gpt-basic',
  client_secret: 'basic-secret with spaces & symbols',
  redirect_uris: ['https://auth.corp.test:8443/callback'],
  token_endpoint_auth_method: 'client_secret_basic',
  post_logout_redirect_uris: ['https://auth.corp.test:8443/logged-out'],
};
const rpPost = {
  client_id: 'gpt-post',
  client_secret: 'post-secret',
  redirect_uris: ['http://app.corp.test:8080/oauth2/callback'],
  token_endpoint_auth_method: 'client_secret_post',
};
const alice = { email: 'alice@corp.test', email_verified: true, name: 'Alice Example', password: 'alice-pw' };
const bob = { email: 'bob@other.test', email_verified: false, name: 'Bob', password: 'bob-pw' };
const configPath = join(dir, 'config.json');
writeFileSync(configPath, JSON.stringify({ issuer, clients: [rpBasic, rpPost], users: [alice, bob] }, null, 2));

const child = spawn(process.execPath, [join(here, 'provider.mjs'), '--port', String(port), '--config', configPath], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let output = '';
child.stdout.on('data', (d) => { output += d; });
child.stderr.on('data', (d) => { output += d; });
const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

function cleanup() {
  if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
const overall = setTimeout(() => {
  console.log('not ok - overall timeout (60 s)');
  console.log(output.replace(/^/gm, '# '));
  cleanup();
  process.exit(1);
}, 60_000);

const ready = await new Promise((resolve) => {
  const t = setTimeout(() => resolve(false), 15_000);
  const check = () => {
    if (output.includes(`oidc-provider listening on http://127.0.0.1:${port}`)) {
      clearTimeout(t);
      resolve(true);
    }
  };
  child.stdout.on('data', check);
  child.on('exit', () => { clearTimeout(t); resolve(false); });
  check();
});
if (!ok(ready, `provider started and printed its listening line (port ${port})`)) {
  console.log(output.replace(/^/gm, '# '));
  cleanup();
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Checks

try {
  // Discovery and keys.
  const disc = JSON.parse((await request(null, `${issuer}/.well-known/openid-configuration`)).text);
  is(disc.issuer, issuer, 'discovery: issuer');
  ok(disc.code_challenge_methods_supported?.includes('S256'), 'discovery: PKCE S256 supported');
  ok(disc.id_token_signing_alg_values_supported?.includes('RS256'), 'discovery: RS256 ID tokens');
  ok(['openid', 'email', 'profile'].every((s) => disc.scopes_supported?.includes(s)), 'discovery: scopes openid email profile');
  ok(['client_secret_basic', 'client_secret_post'].every((m) => disc.token_endpoint_auth_methods_supported?.includes(m)),
    'discovery: client_secret_basic and client_secret_post');
  ok(disc.authorization_response_iss_parameter_supported === true, 'discovery: RFC 9207 iss in authorization responses');
  ok(typeof disc.end_session_endpoint === 'string', 'discovery: end_session_endpoint');
  const jwks = JSON.parse((await request(null, disc.jwks_uri)).text);
  ok(jwks.keys?.length >= 1 && jwks.keys.every((k) => k.kty === 'RSA' && !k.d), 'JWKS: public RSA keys only');

  function authUrl(client, { state, nonce, verifier, pkce = true }) {
    const u = new URL(disc.authorization_endpoint);
    u.searchParams.set('response_type', 'code');
    u.searchParams.set('client_id', client.client_id);
    u.searchParams.set('redirect_uri', client.redirect_uris[0]);
    u.searchParams.set('scope', 'openid email profile');
    u.searchParams.set('state', state);
    u.searchParams.set('nonce', nonce);
    if (pkce) {
      u.searchParams.set('code_challenge', b64url(createHash('sha256').update(verifier).digest()));
      u.searchParams.set('code_challenge_method', 'S256');
    }
    return u.href;
  }

  // Starts a flow; returns the login page or the redirect to the client.
  async function start(jar, client, opts) {
    return follow(jar, await request(jar, authUrl(client, opts)), client.redirect_uris[0]);
  }

  async function login(jar, client, user, password = user.password) {
    const flow = newFlow();
    const first = await start(jar, client, flow);
    if (!first.page) throw new Error(`expected the login page, got a redirect to ${first.redirect}`);
    const action = formAction(first.page.text, first.page.url);
    if (!action) throw new Error(`no login form in ${first.page.url}: ${first.page.text.slice(0, 300)}`);
    const body = new URLSearchParams({ email: user.email, password }).toString();
    const posted = await request(jar, action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    const end = await follow(jar, posted, client.redirect_uris[0]);
    return { ...flow, loginPage: first.page, ...end };
  }

  async function token(client, code, verifier, { auth = client.token_endpoint_auth_method, secret = client.client_secret } = {}) {
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: client.redirect_uris[0],
      code_verifier: verifier,
    });
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    if (auth === 'client_secret_basic') {
      headers.authorization = basic(client.client_id, secret);
    } else {
      form.set('client_id', client.client_id);
      form.set('client_secret', secret);
    }
    const r = await request(null, disc.token_endpoint, { method: 'POST', headers, body: form.toString() });
    let json;
    try { json = JSON.parse(r.text); } catch { json = {}; }
    return { status: r.status, json };
  }

  function checkIdToken(idToken, client, user, nonce, label) {
    const t = decodeJwt(idToken);
    is(t.header.alg, 'RS256', `${label}: ID token alg RS256`);
    const jwk = jwks.keys.find((k) => k.kid === t.header.kid);
    ok(jwk, `${label}: ID token kid ${t.header.kid} is in the JWKS`);
    if (jwk) {
      const key = createPublicKey({ key: jwk, format: 'jwk' });
      ok(verify('sha256', t.signingInput, key, t.signature), `${label}: ID token RS256 signature verifies`);
    }
    const p = t.payload;
    note(`${label} ID token payload: ${JSON.stringify(p)}`);
    is(p.iss, issuer, `${label}: iss`);
    ok(p.aud === client.client_id || (Array.isArray(p.aud) && p.aud.includes(client.client_id)), `${label}: aud is the client id`, JSON.stringify(p.aud));
    is(p.nonce, nonce, `${label}: nonce`);
    is(p.email, user.email, `${label}: email claim in the ID token`);
    is(p.email_verified, user.email_verified, `${label}: email_verified claim in the ID token`);
    is(p.name, user.name, `${label}: name claim in the ID token`);
    ok(typeof p.sub === 'string' && p.sub !== user.email, `${label}: sub is opaque (not the email)`, p.sub);
    const now = Math.floor(Date.now() / 1000);
    ok(p.exp > now && p.iat <= now + 5, `${label}: iat/exp sane`, `iat ${p.iat} exp ${p.exp} now ${now}`);
  }

  // PKCE is required.
  {
    const r = await start(new Jar(), rpBasic, { state: 's', nonce: 'n', pkce: false });
    ok(r.redirect?.searchParams.get('error') === 'invalid_request'
      && /PKCE|code_challenge/.test(r.redirect.searchParams.get('error_description') ?? ''),
    'authorization without PKCE is refused', r.redirect?.href ?? r.page?.status);
  }

  // Wrong password: the form comes back with an error, no redirect.
  const jarA = new Jar();
  {
    const flow = await login(jarA, rpBasic, alice, 'wrong-password');
    ok(flow.loginPage.status === 200 && /<input[^>]*name="email"/.test(flow.loginPage.text)
      && /<input[^>]*name="password"[^>]*type="password"/.test(flow.loginPage.text)
      && /<button[^>]*type="submit"[^>]*>Sign in</.test(flow.loginPage.text), 'login page has email, password and a "Sign in" button');
    ok(flow.page && flow.page.status === 200 && /Invalid email or password/.test(flow.page.text)
      && formAction(flow.page.text, flow.page.url), 'wrong password: login form re-rendered with an error',
    flow.redirect?.href ?? flow.page?.status);
    const unknown = await login(new Jar(), rpBasic, { email: 'nobody@corp.test' }, 'x');
    ok(unknown.page && /Invalid email or password/.test(unknown.page.text), 'unknown user: refused');
  }

  // Alice, client_secret_basic.
  const a = await login(jarA, rpBasic, alice);
  ok(a.redirect, 'correct password: redirected to the client redirect_uri', a.page?.text.slice(0, 200));
  const aCode = a.redirect?.searchParams.get('code');
  ok(aCode, 'authorization response has a code');
  is(a.redirect?.searchParams.get('state'), a.state, 'authorization response state matches');
  is(a.redirect?.searchParams.get('iss'), issuer, 'authorization response carries iss (RFC 9207)');
  is(`${a.redirect?.origin}${a.redirect?.pathname}`, rpBasic.redirect_uris[0], 'redirected to the registered redirect_uri');
  ok(jarA.seen.length > 0 && jarA.seen.every((c) => /;\s*samesite=lax/i.test(c)),
    "provider's cookies are SameSite=Lax", jarA.seen.filter((c) => !/samesite=lax/i.test(c)).join(' | '));

  const aTok = await token(rpBasic, aCode, a.verifier);
  is(aTok.status, 200, 'token endpoint: client_secret_basic exchange succeeds');
  ok(aTok.json.id_token && aTok.json.access_token && /bearer/i.test(aTok.json.token_type ?? ''), 'token response has id_token, access_token, token_type Bearer', JSON.stringify(aTok.json));
  if (aTok.json.id_token) checkIdToken(aTok.json.id_token, rpBasic, alice, a.nonce, 'basic');

  async function userinfo(accessToken) {
    const ui = await request(null, disc.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
    let json = {};
    try { json = JSON.parse(ui.text); } catch { /* checked by the caller */ }
    return { status: ui.status, json, text: ui.text };
  }
  if (aTok.json.access_token) {
    const ui = await userinfo(aTok.json.access_token);
    ok(ui.status === 200 && ui.json.email === alice.email, 'userinfo returns the email', `${ui.status} ${ui.text}`);
  }

  const replay = await token(rpBasic, aCode, a.verifier);
  ok(replay.status === 400 && replay.json.error === 'invalid_grant', 'replayed code is refused (invalid_grant)', `${replay.status} ${JSON.stringify(replay.json)}`);
  if (aTok.json.access_token) {
    const ui = await userinfo(aTok.json.access_token);
    is(ui.status, 401, 'replayed code revoked the access token issued for it');
  }

  // Wrong code_verifier and wrong secret.
  {
    const f = await login(new Jar(), rpBasic, alice);
    const code = f.redirect?.searchParams.get('code');
    const badPkce = await token(rpBasic, code, `${f.verifier}x`);
    ok(badPkce.status === 400 && badPkce.json.error === 'invalid_grant', 'wrong code_verifier is refused', JSON.stringify(badPkce.json));
    const g = await login(new Jar(), rpBasic, alice);
    const viaPost = await token(rpBasic, g.redirect?.searchParams.get('code'), g.verifier, { auth: 'client_secret_post' });
    ok(viaPost.status === 401 && viaPost.json.error === 'invalid_client', 'client registered for client_secret_basic cannot use client_secret_post', `${viaPost.status} ${JSON.stringify(viaPost.json)}`);
    const badSecret = await token(rpBasic, g.redirect?.searchParams.get('code'), g.verifier, { secret: 'nope' });
    ok(badSecret.status === 401 && badSecret.json.error === 'invalid_client', 'wrong client secret is refused', `${badSecret.status} ${JSON.stringify(badSecret.json)}`);
  }

  // Bob (email not verified), second client with client_secret_post.
  const jarB = new Jar();
  const b = await login(jarB, rpPost, bob);
  const bCode = b.redirect?.searchParams.get('code');
  ok(bCode && b.redirect.searchParams.get('state') === b.state, 'second client: code and state');
  const bBasic = await token(rpPost, bCode, b.verifier, { auth: 'client_secret_basic' });
  ok(bBasic.status === 401 && bBasic.json.error === 'invalid_client', 'client registered for client_secret_post cannot use client_secret_basic', `${bBasic.status} ${JSON.stringify(bBasic.json)}`);
  {
    // The refused attempt above did not consume the code.
    const bTok = await token(rpPost, bCode, b.verifier);
    is(bTok.status, 200, 'token endpoint: client_secret_post exchange succeeds');
    if (bTok.json.id_token) checkIdToken(bTok.json.id_token, rpPost, bob, b.nonce, 'post');
  }

  // Single sign-on: Alice's provider session signs her into the second client without a form
  // (consent is granted automatically).
  {
    const flow = newFlow();
    const r = await start(jarA, rpPost, flow);
    ok(r.redirect?.searchParams.get('code') && r.redirect.searchParams.get('state') === flow.state,
      'existing provider session: second client gets a code without the login form', r.page?.url);
    if (r.redirect) {
      const t = await token(rpPost, r.redirect.searchParams.get('code'), flow.verifier);
      ok(t.json.id_token && decodeJwt(t.json.id_token).payload.email === alice.email, 'SSO ID token is for the same user');
    }
  }

  // prompt=login forces the form even with a session.
  {
    const flow = newFlow();
    const u = new URL(authUrl(rpBasic, flow));
    u.searchParams.set('prompt', 'login');
    const r = await follow(jarA, await request(jarA, u.href), rpBasic.redirect_uris[0]);
    ok(r.page && formAction(r.page.text, r.page.url), 'prompt=login shows the login form again');
  }

  // Cancel on the login page: access_denied back to the client.
  {
    const flow = newFlow();
    const jar = new Jar();
    const r = await start(jar, rpBasic, flow);
    const action = r.page && formAction(r.page.text, r.page.url).replace(/\/login$/, '/abort');
    const aborted = await follow(jar, await request(jar, action, { method: 'POST' }), rpBasic.redirect_uris[0]);
    ok(aborted.redirect?.searchParams.get('error') === 'access_denied' && aborted.redirect.searchParams.get('state') === flow.state,
      'cancel: error=access_denied with state', aborted.redirect?.href);
  }

  // RP-initiated logout (end_session) ends the provider session.
  {
    const u = new URL(disc.end_session_endpoint);
    u.searchParams.set('id_token_hint', aTok.json.id_token);
    u.searchParams.set('post_logout_redirect_uri', rpBasic.post_logout_redirect_uris[0]);
    u.searchParams.set('state', 'bye');
    const conf = await request(jarA, u.href);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(conf.text)?.[1];
    const act = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"|<form[^>]*action="([^"]+)"[^>]*id="op.logoutForm"/.exec(conf.text);
    ok(conf.status === 200 && xsrf && act, 'end_session: confirmation form', conf.text.slice(0, 300));
    const action = new URL((act?.[1] ?? act?.[2] ?? '').replace(/&amp;/g, '&'), u).href;
    const done = await follow(jarA, await request(jarA, action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
    }), rpBasic.post_logout_redirect_uris[0]);
    ok(done.redirect && done.redirect.searchParams.get('state') === 'bye', 'end_session: redirected to post_logout_redirect_uri with state', done.redirect?.href ?? done.page?.text.slice(0, 200));
    const again = await start(jarA, rpBasic, newFlow());
    ok(again.page && formAction(again.page.text, again.page.url), 'after end_session the login form is shown again');
  }
} catch (err) {
  ok(false, 'no exception', err.stack);
}

// Clean shutdown on SIGTERM.
child.kill('SIGTERM');
const ex = await Promise.race([exited, new Promise((r) => setTimeout(() => r({ timeout: true }), 5000))]);
ok(ex.code === 0, 'provider exits 0 on SIGTERM', JSON.stringify(ex));
ok(/"GET \/\.well-known\/openid-configuration" 200/.test(output), 'provider logged one line per request');
ok(!/oidc-provider (WARNING|NOTICE)/.test(output), 'provider printed no oidc-provider warnings or notices',
  output.split('\n').filter((l) => /oidc-provider (WARNING|NOTICE)/.test(l)).join(' | '));

clearTimeout(overall);
if (failed || verbose) console.log(output.trimEnd().replace(/^/gm, '# provider: '));
console.log(`1..${n}`);
cleanup();
if (failed) {
  console.log(`# ${failed} of ${n} checks failed`);
  process.exit(1);
}
console.log(`# all ${n} checks passed`);
