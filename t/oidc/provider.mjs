#!/usr/bin/env node
// A real OpenID provider (npm oidc-provider, a certified implementation) for gpt_auth's tests and demo.
//
//   node t/oidc/provider.mjs --config CONFIG.json [--port 9000] [--host 127.0.0.1]
//                            [--issuer URL] [--jwks FILE] [--log FILE]
//
// Environment equivalents: OIDC_CONFIG, OIDC_PORT, OIDC_HOST, OIDC_ISSUER, OIDC_JWKS, OIDC_LOG.
// --jwks FILE: signing keys ({"keys": [private JWKs]}) read from FILE, or generated and written
// there if it does not exist. --log FILE: append the log lines there instead of stdout.
// CONFIG.json:
//   {
//     "issuer":  "http://127.0.0.1:9000",            optional, default http://HOST:PORT
//     "clients": [ { "client_id": "gpt", "client_secret": "s3cret",
//                    "redirect_uris": ["https://auth.corp.test:8443/callback"],
//                    "token_endpoint_auth_method": "client_secret_basic",  (or client_secret_post)
//                    "post_logout_redirect_uris": ["https://auth.corp.test:8443/"] } ],  optional
//     "users":   [ { "email": "alice@corp.test", "email_verified": true, "name": "Alice",
//                    "password": "alice-pw", "sub": "optional, default derived from email" } ],
//     "ttl":     { "IdToken": 3600, ... }                optional, seconds, oidc-provider ttl names
//   }
//
// Plain http on loopback: authorization code flow, PKCE S256 required, scopes openid email profile,
// email/email_verified/name in the ID token, RS256 ID tokens with a key generated at start (or read
// from / written to --jwks FILE). The login page at /interaction/<uid> is a plain HTML form that a
// browser or a raw HTTP client (following redirects, keeping cookies) can complete; a correct login
// also grants consent, so the flow returns straight to the client's redirect_uri. Unlike the
// library's default, the token endpoint insists on each client's registered
// token_endpoint_auth_method (basic vs post), so a relying party sending the other is refused.
// Prints "oidc-provider listening on http://HOST:PORT" when ready; one log line per request;
// exits 0 on SIGTERM/SIGINT. --port 0 picks a free port (then the default issuer uses it).

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

function die(msg) {
  process.stderr.write(`provider.mjs: ${msg}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Command line and configuration

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      config: { type: 'string', default: process.env.OIDC_CONFIG },
      port: { type: 'string', default: process.env.OIDC_PORT ?? '9000' },
      host: { type: 'string', default: process.env.OIDC_HOST ?? '127.0.0.1' },
      issuer: { type: 'string', default: process.env.OIDC_ISSUER },
      jwks: { type: 'string', default: process.env.OIDC_JWKS },
      log: { type: 'string', default: process.env.OIDC_LOG },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  die(err.message);
}
if (args.help) {
  process.stdout.write('usage: node provider.mjs --config CONFIG.json [--port 9000] '
    + '[--host 127.0.0.1] [--issuer URL] [--jwks FILE] [--log FILE]\n');
  process.exit(0);
}
if (!args.config) die('--config CONFIG.json is required');
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) die(`bad --port ${args.port}`);

let config;
try {
  config = JSON.parse(readFileSync(args.config, 'utf8'));
} catch (err) {
  die(`cannot read config ${args.config}: ${err.message}`);
}

function checkConfig(c) {
  if (typeof c !== 'object' || c === null) die('config must be a JSON object');
  if (c.issuer !== undefined && typeof c.issuer !== 'string') die('config.issuer must be a string');
  if (!Array.isArray(c.clients) || c.clients.length === 0) die('config.clients must be a non-empty array');
  for (const [i, cl] of c.clients.entries()) {
    if (typeof cl.client_id !== 'string' || !cl.client_id) die(`clients[${i}].client_id missing`);
    if (typeof cl.client_secret !== 'string' || !cl.client_secret) die(`clients[${i}].client_secret missing`);
    if (!Array.isArray(cl.redirect_uris) || cl.redirect_uris.length === 0) {
      die(`clients[${i}].redirect_uris must be a non-empty array`);
    }
    const m = cl.token_endpoint_auth_method ?? 'client_secret_basic';
    if (!['client_secret_basic', 'client_secret_post'].includes(m)) {
      die(`clients[${i}].token_endpoint_auth_method must be client_secret_basic or client_secret_post`);
    }
  }
  if (!Array.isArray(c.users)) die('config.users must be an array');
  const seen = new Set();
  for (const [i, u] of c.users.entries()) {
    if (typeof u.email !== 'string' || !u.email) die(`users[${i}].email missing`);
    if (typeof u.password !== 'string') die(`users[${i}].password missing`);
    if (u.email_verified !== undefined && typeof u.email_verified !== 'boolean') {
      die(`users[${i}].email_verified must be a boolean`);
    }
    if (seen.has(u.email.toLowerCase())) die(`users[${i}]: duplicate email ${u.email}`);
    seen.add(u.email.toLowerCase());
  }
  if (c.ttl !== undefined && (typeof c.ttl !== 'object' || c.ttl === null)) die('config.ttl must be an object');
}
checkConfig(config);

// ---------------------------------------------------------------------------------------------
// Accounts

function defaultSub(email) {
  // Stable and opaque (not the email), so a relying party cannot get away with reading `sub`.
  return `u-${createHash('sha256').update(email.toLowerCase()).digest('hex').slice(0, 20)}`;
}

const users = config.users.map((u) => ({
  sub: typeof u.sub === 'string' && u.sub ? u.sub : defaultSub(u.email),
  email: u.email,
  email_verified: u.email_verified ?? false,
  name: u.name ?? u.email,
  password: u.password,
}));
const usersBySub = new Map(users.map((u) => [u.sub, u]));
const usersByEmail = new Map(users.map((u) => [u.email.toLowerCase(), u]));

async function findAccount(ctx, sub) {
  const user = usersBySub.get(sub);
  if (!user) return undefined;
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: user.email,
        email_verified: user.email_verified,
        name: user.name,
      };
    },
  };
}

function checkPassword(email, password) {
  const user = usersByEmail.get(String(email).trim().toLowerCase());
  if (!user) return undefined;
  const a = createHash('sha256').update(String(password)).digest();
  const b = createHash('sha256').update(user.password).digest();
  return a.equals(b) ? user : undefined;
}

// ---------------------------------------------------------------------------------------------
// Signing keys

function generateJwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    keys: [{ ...jwk, kid: `rs256-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' }],
  };
}

let jwks;
if (args.jwks && existsSync(args.jwks)) {
  try {
    jwks = JSON.parse(readFileSync(args.jwks, 'utf8'));
  } catch (err) {
    die(`cannot read --jwks ${args.jwks}: ${err.message}`);
  }
} else {
  jwks = generateJwks();
  if (args.jwks) writeFileSync(args.jwks, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
}

// ---------------------------------------------------------------------------------------------
// Storage: a plain in-memory adapter (the library's own one is an LRU capped at 1000 entries
// and warns on every start).

const store = new Map(); // key -> { value, exp (ms since epoch) }

function storeGet(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.exp <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return e.value;
}

function storeSet(key, value, expiresIn) {
  store.set(key, { value, exp: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
}

setInterval(() => {
  const now = Date.now();
  for (const [k, e] of store) if (e.exp <= now) store.delete(k);
}, 60_000).unref();

class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    storeSet(key, payload, expiresIn);
    if (this.model === 'Session' && payload.uid) storeSet(`sessionUid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) storeSet(`userCode:${payload.userCode}`, id, expiresIn);
    if (payload.grantId && this.model !== 'Grant') {
      const gk = `grant:${payload.grantId}`;
      const list = storeGet(gk) ?? [];
      list.push(key);
      storeSet(gk, list, 14 * 24 * 3600);
    }
  }

  async find(id) {
    return storeGet(this.key(id));
  }

  async findByUid(uid) {
    const id = storeGet(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = storeGet(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = storeGet(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const k of storeGet(gk) ?? []) store.delete(k);
    store.delete(gk);
  }
}

// ---------------------------------------------------------------------------------------------
// HTML

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (ch) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[ch]);
}

const STYLE = `body{font-family:sans-serif;max-width:26em;margin:3em auto;padding:0 1em}
label{display:block;margin:.6em 0}input{display:block;width:100%;padding:.4em;box-sizing:border-box}
button{margin-top:1em;padding:.5em 1.2em}.error{color:#b00020}.muted{color:#666;font-size:.9em}`;

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function loginPage(uid, clientId, { email = '', error } = {}) {
  return page('Sign in - test OpenID provider', `<h1>Sign in</h1>
<p class="muted">Test OpenID provider, signing in to <b>${esc(clientId)}</b>.</p>
${error ? `<p class="error" role="alert" id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" id="login">
<label>Email <input name="email" type="text" autocomplete="username" value="${esc(email)}" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort" id="abort">
<button type="submit" class="muted">Cancel</button>
</form>`);
}

function send(res, status, html, headers = {}) {
  const body = Buffer.from(html);
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': body.length,
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(body);
}

// ---------------------------------------------------------------------------------------------
// Provider

const ttlDefaults = {
  AccessToken: 3600,
  AuthorizationCode: 60,
  ClientCredentials: 600,
  DeviceCode: 600,
  BackchannelAuthenticationRequest: 600,
  IdToken: 3600,
  RefreshToken: 14 * 24 * 3600,
  Interaction: 3600,
  Session: 14 * 24 * 3600,
  Grant: 14 * 24 * 3600,
};

function providerConfiguration() {
  return {
    adapter: MemoryAdapter,
    clients: config.clients.map((c) => ({
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    findAccount,
    jwks,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    scopes: ['openid', 'email', 'profile'],
    // Put the scope claims (email, email_verified, name) into the ID token of a code flow too.
    conformIdTokenClaims: false,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    // Test peer: any origin may read discovery/JWKS/token responses cross-origin.
    clientBasedCORS: () => true,
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      // Plain http: SameSite=None without Secure is rejected by browsers, so use Lax throughout.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      userinfo: { enabled: true },
      revocation: { enabled: true },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    ttl: { ...ttlDefaults, ...(config.ttl ?? {}) },
    renderError,
  };
}

async function logoutSource(ctx, form) {
  ctx.body = page('Sign out - test OpenID provider', `<h1>Sign out from ${esc(ctx.host)}?</h1>
${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  const client = ctx.oidc.client;
  ctx.body = page('Signed out - test OpenID provider', `<h1>Signed out</h1>
<p>You have signed out${client ? ` of ${esc(client.clientId)}` : ''}.</p>`);
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error - test OpenID provider', `<h1>Error</h1>
<p id="error"><b>${esc(out.error)}</b>${out.error_description ? `: ${esc(out.error_description)}` : ''}</p>`);
}

// Create a grant covering what the interaction asks for (auto-consent).
async function autoGrant(provider, interaction, accountId) {
  const { params, prompt } = interaction;
  let grant;
  if (interaction.grantId) grant = await provider.Grant.find(interaction.grantId);
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  grant.addOIDCScope(String(params.scope ?? 'openid'));
  const d = prompt?.details ?? {};
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  if (d.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

function readForm(req, limit = 65536) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

async function handleInteraction(provider, req, res, uid, action) {
  let interaction;
  try {
    interaction = await provider.interactionDetails(req, res);
  } catch (err) {
    send(res, 400, page('Error - test OpenID provider', `<h1>Error</h1>
<p id="error">Interaction not found or expired (${esc(err.message)}). Start the sign-in again.</p>`));
    return;
  }
  if (interaction.uid !== uid) {
    send(res, 400, page('Error - test OpenID provider', '<h1>Error</h1><p id="error">Interaction mismatch.</p>'));
    return;
  }
  const clientId = interaction.params.client_id;
  const promptName = interaction.prompt.name;

  if (action === undefined && req.method === 'GET') {
    if (promptName === 'login') {
      send(res, 200, loginPage(uid, clientId));
      return;
    }
    // An existing session only needs consent: grant it without asking.
    const accountId = interaction.session?.accountId;
    if (!accountId) {
      send(res, 200, loginPage(uid, clientId));
      return;
    }
    const grantId = await autoGrant(provider, interaction, accountId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }

  if (action === 'login' && req.method === 'POST') {
    const form = await readForm(req);
    const email = form.get('email') ?? '';
    const user = checkPassword(email, form.get('password') ?? '');
    if (!user) {
      log(`login failed for ${JSON.stringify(email)} (client ${clientId})`);
      send(res, 200, loginPage(uid, clientId, { email, error: 'Invalid email or password.' }));
      return;
    }
    log(`login ok for ${user.email} (client ${clientId})`);
    const grantId = await autoGrant(provider, interaction, user.sub);
    await provider.interactionFinished(req, res, {
      login: { accountId: user.sub, amr: ['pwd'] },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (action === 'abort' && req.method === 'POST') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  send(res, 405, page('Error - test OpenID provider', '<h1>Method not allowed</h1>'), { Allow: 'GET, POST' });
}

// ---------------------------------------------------------------------------------------------
// Server

// Log lines go to stdout, or appended to --log FILE (e.g. when stdout is a TAP stream).
function out(line) {
  if (args.log) appendFileSync(args.log, `${line}\n`);
  else process.stdout.write(`${line}\n`);
}

function log(msg) {
  out(`${new Date().toISOString()} ${msg}`);
}

let provider;
let callback;
let tokenPath;

// oidc-provider accepts a client secret by either method whatever the client registered; this
// provider insists on the registered token_endpoint_auth_method, so that a relying party sending
// the wrong one is caught. The body is read here and handed on to the library unchanged.
async function strictTokenAuth(req, res) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 56 * 1024) {
      res.writeHead(413, { 'Content-Type': 'application/json' });
      res.end('{"error":"invalid_request","error_description":"request body too large"}');
      return;
    }
    chunks.push(c);
  }
  const raw = Buffer.concat(chunks);
  const form = new URLSearchParams(raw.toString('utf8'));
  const authz = req.headers.authorization ?? '';
  let used;
  let clientId;
  const m = /^basic\s+(\S+)$/i.exec(authz);
  if (m) {
    used = 'client_secret_basic';
    const dec = Buffer.from(m[1], 'base64').toString('utf8');
    const i = dec.indexOf(':');
    try {
      clientId = decodeURIComponent((i < 0 ? dec : dec.slice(0, i)).replace(/\+/g, ' '));
    } catch {
      clientId = undefined;
    }
  } else if (form.has('client_secret')) {
    used = 'client_secret_post';
    clientId = form.get('client_id') ?? undefined;
  }
  const client = config.clients.find((c) => c.client_id === clientId);
  const registered = client?.token_endpoint_auth_method ?? 'client_secret_basic';
  if (client && used && used !== registered) {
    log(`token: client ${clientId} used ${used}, registered for ${registered}: refused`);
    const body = JSON.stringify({
      error: 'invalid_client',
      error_description: `client authentication failed: client is registered for ${registered}, not ${used}`,
    });
    res.writeHead(401, {
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
      ...(used === 'client_secret_basic' ? { 'WWW-Authenticate': 'Basic realm="token"' } : {}),
    });
    res.end(body);
    return;
  }
  // Replay the buffered body to the library through a stream that looks like the request.
  const replay = new PassThrough();
  for (const k of ['headers', 'rawHeaders', 'method', 'url', 'httpVersion', 'httpVersionMajor',
    'httpVersionMinor', 'socket', 'connection', 'trailers', 'rawTrailers', 'complete']) {
    replay[k] = req[k];
  }
  replay.end(raw);
  callback(replay, res);
}

const server = createServer((req, res) => {
  const start = process.hrtime.bigint();
  res.on('finish', () => {
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    log(`${req.socket.remoteAddress} "${req.method} ${req.url}" ${res.statusCode} ${ms.toFixed(1)}ms`);
  });
  if (!callback) {
    res.writeHead(503, { 'Content-Type': 'text/plain' });
    res.end('starting\n');
    return;
  }
  const path = req.url.split('?')[0];
  const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?\/?$/.exec(path);
  if (m) {
    handleInteraction(provider, req, res, m[1], m[2]).catch((err) => {
      log(`interaction error: ${err.stack ?? err}`);
      if (!res.headersSent) {
        send(res, 500, page('Error - test OpenID provider', `<h1>Error</h1><p id="error">${esc(err.message)}</p>`));
      } else {
        res.end();
      }
    });
    return;
  }
  if (req.method === 'POST' && path === tokenPath) {
    strictTokenAuth(req, res).catch((err) => {
      log(`token endpoint error: ${err.stack ?? err}`);
      if (!res.headersSent) res.writeHead(400);
      res.end();
    });
    return;
  }
  callback(req, res);
});

server.on('error', (err) => die(`listen on ${args.host}:${port}: ${err.message}`));

server.listen(port, args.host, () => {
  const addr = server.address();
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const listenUrl = `http://${hostForUrl}:${addr.port}`;
  const issuer = args.issuer ?? config.issuer ?? listenUrl;
  let url;
  try {
    url = new URL(issuer);
  } catch {
    die(`bad issuer ${issuer}`);
  }
  if (url.pathname !== '/' || url.search || url.hash) {
    die(`issuer ${issuer} must be an origin without path, query or fragment`);
  }
  try {
    provider = new Provider(issuer.replace(/\/$/, ''), providerConfiguration());
  } catch (err) {
    die(`provider configuration: ${err.message}`);
  }
  provider.on('server_error', (ctx, err) => log(`server_error: ${err.stack ?? err}`));
  for (const ev of ['authorization.error', 'grant.error', 'end_session.error', 'userinfo.error']) {
    provider.on(ev, (ctx, err) => log(`${ev}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`));
  }
  tokenPath = new URL(provider.urlFor('token')).pathname;
  callback = provider.callback();
  log(`issuer ${provider.issuer}, ${config.clients.length} client(s), ${users.length} user(s), `
    + `signing key ${jwks.keys.map((k) => k.kid).join(', ')}`);
  out(`oidc-provider listening on ${listenUrl}`);
});

function shutdown(sig) {
  log(`${sig}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
