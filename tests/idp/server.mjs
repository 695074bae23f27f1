#!/usr/bin/env node
// Local OAuth 2.0 / OpenID Connect authorization server for tokensmith's
// integration tests, built on the `oidc-provider` npm package (pinned in
// package.json / package-lock.json; install with `npm ci --prefix tests/idp`).
//
// Usage:
//   node tests/idp/server.mjs --port N [--device-ttl SECONDS] [--access-ttl SECONDS]
//                             [--client-keys FILE] [--dpop-nonce]
//
// --dpop-nonce makes the token endpoint demand a server nonce in every DPoP
// proof (RFC 9449 §8: 400 use_dpop_nonce + DPoP-Nonce). Without it, DPoP
// (on by default in oidc-provider 9) still works and nonces are offered in
// DPoP-Nonce headers, but never required.
//
// --port 0 picks a free port. The issuer is http://127.0.0.1:<port> (plain
// HTTP on loopback only). Once listening, exactly one line is written to
// stdout:  READY {"issuer": ..., "port": ..., ...}
// Everything else oidc-provider prints (development-mode notices and
// warnings) goes to stderr. SIGTERM / SIGINT close the server and exit 0.
//
// This is a TEST FIXTURE: in-memory storage, ephemeral keys, dev login pages
// that accept any username/password. Never expose it beyond 127.0.0.1.
//
// oidc-provider behaviours the tests depend on or should know about:
// - Basic client auth: both halves are form-decoded ('+' -> space, then
//   percent-decoding), as RFC 6749 §2.3.1 requires; the header is split at
//   the first ':'. client_secret_basic and client_secret_post clients may
//   each use either method (the registered one is not enforced).
// - Unknown parameters (e.g. `audience`) are ignored.
// - Device authorization responses carry no `interval`; slow_down is never
//   sent. A device authorization request without any scope is ended with
//   access_denied after the user logs in, so always request a scope.
// - Redeeming an already redeemed device code -> invalid_grant, and the
//   tokens issued from it (incl. refresh tokens) are revoked.
// - Refresh responses carry `scope`, a new `refresh_token` and, when the
//   grant has `openid`, an `id_token`.
// - JWT client authentication (private_key_jwt, client_secret_jwt): `aud`
//   may be the issuer, the token endpoint or the endpoint called; `exp` and
//   `jti` are required, and a `jti` seen before is refused (invalid_client,
//   oidc-provider's ReplayDetection model in the in-memory adapter).
// - Extension grants registered here (registerGrantType): RFC 8693 token
//   exchange and the RFC 7523 §2.1 JWT bearer grant; see below.
//
// --client-keys FILE (JSON, written by tests/idp_harness.py with keys it
// generates) holds public keys only:
//   {"clients": {"<client_id>": {"keys": [JWK, ...]}, ...},
//    "trusted_issuers": {"<issuer>": {"keys": [JWK, ...]}, ...}}
// Clients listed there are registered with token_endpoint_auth_method
// private_key_jwt and that `jwks`; trusted issuers may sign JWT bearer
// assertions and JWT subject tokens. Without the file those clients do not
// exist and only the clients' own keys are trusted.
// - DPoP (RFC 9449; on by default in oidc-provider 9): ANY client whose
//   token request carries a valid DPoP proof gets `token_type: DPoP` and a
//   token bound to the key (introspection shows `cnf.jkt`); a public
//   client's refresh tokens are bound too (a refresh without a proof of the
//   same key -> invalid_grant). `dpop-required` gets nothing without a proof
//   (`dpop_bound_access_tokens`). A replayed proof (same jti) is detected
//   for refresh requests only (-> invalid_grant).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { errors, Provider } from 'oidc-provider';

// oidc-provider prints its "you SHOULD change ..." notices with console.info,
// i.e. to stdout. Keep stdout reserved for the READY line.
console.info = console.error;
console.log = console.error;

// --- command line -----------------------------------------------------------

function positiveInt(name, raw, { allowZero = false } = {}) {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    console.error(`server.mjs: --${name} must be an integer ${allowZero ? '>= 0' : '>= 1'}, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string' },
      'device-ttl': { type: 'string', default: '600' },
      'access-ttl': { type: 'string', default: '3600' },
      'client-keys': { type: 'string' },
      'dpop-nonce': { type: 'boolean', default: false },
    },
    strict: true,
  }));
} catch (err) {
  console.error(`server.mjs: ${err.message}`);
  process.exit(2);
}
if (args.port === undefined) {
  console.error('server.mjs: --port is required (use --port 0 for a free port)');
  process.exit(2);
}
const requestedPort = positiveInt('port', args.port, { allowZero: true });
const deviceTtl = positiveInt('device-ttl', args['device-ttl']);
const accessTtl = positiveInt('access-ttl', args['access-ttl']);
let clientKeys = { clients: {}, trusted_issuers: {} };
if (args['client-keys'] !== undefined) {
  try {
    clientKeys = { ...clientKeys, ...JSON.parse(readFileSync(args['client-keys'], 'utf8')) };
  } catch (err) {
    console.error(`server.mjs: --client-keys: ${err.message}`);
    process.exit(2);
  }
}
const dpopNonce = args['dpop-nonce'];

// --- static test data (mirrored in tests/idp_harness.py) --------------------

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

// Resource servers (RFC 8707 resource indicators). Client-credentials
// requests without `resource` get DEFAULT_RESOURCE (see defaultResource).
const DEFAULT_RESOURCE = 'https://api.tokensmith.test/';
const RESOURCE_SERVERS = new Map([
  [DEFAULT_RESOURCE, { scope: 'api:read api:write' }],
  ['https://other-api.tokensmith.test/', { scope: 'other:read' }],
]);
// Protected resources run by the tests themselves (tests/resource_server.py)
// on a loopback port: any http://127.0.0.1:<port>/protected... identifier.
const LOOPBACK_RESOURCE = /^http:\/\/127\.0\.0\.1:\d+\/protected(\/|$)/;

const clients = [
  {
    // RFC 6749 §2.3.1 HTTP Basic. The secret deliberately contains ':', '%',
    // '+' and a space, so only a correctly form-encoded header authenticates.
    client_id: 'cc-client',
    client_secret: 's3cr:t%25 +x/~',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'cc-post-client',
    client_secret: 'post-secret-1',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_post',
  },
  {
    // client_id with '/' and ':' (both must be form-encoded in Basic auth).
    client_id: 'urn:tokensmith/cc:odd',
    client_secret: 'odd secret+1',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // Public device client (RFC 8628); refresh tokens rotate (see
    // rotateRefreshToken below).
    client_id: 'device-public',
    grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
    token_endpoint_auth_method: 'none',
    scope: 'openid offline_access profile email',
  },
  {
    client_id: 'device-confidential',
    client_secret: 'device-secret-1',
    grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid offline_access profile email',
  },
  {
    // Public native client for the browser login (authorization code + PKCE,
    // RFC 8252). `native` makes oidc-provider accept any port on a loopback
    // redirect URI (RFC 8252 §7.3): http://127.0.0.1:<any>/callback,
    // http://[::1]:<any>/callback. PKCE is required for public clients.
    client_id: 'browser-public',
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    redirect_uris: ['http://127.0.0.1/callback', 'http://[::1]/callback'],
    scope: 'openid offline_access profile email',
  },
  {
    // flytekit's defaults (flyteadmin's public client config): redirect URI
    // http://localhost:53593/callback and scopes `offline all`. A `web`
    // client, so the redirect URI must match exactly, port included (the
    // Okta-style registration a fixed redirect_uri is for).
    client_id: 'flytekit-public',
    application_type: 'web',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    redirect_uris: ['http://localhost:53593/callback'],
    scope: 'openid offline_access offline all',
  },
  {
    // RFC 9449 §5: this client's access tokens must be DPoP-bound (a token
    // request without a DPoP proof -> invalid_grant).
    client_id: 'dpop-required',
    client_secret: 'dpop-secret-1',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
  },
  {
    // The test resource server introspects tokens with these credentials
    // (RFC 7662); it never asks for tokens itself.
    client_id: 'resource-server',
    client_secret: 'rs-secret-1',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // client_secret_jwt (OIDC Core §9): assertions MACed with this secret.
    client_id: 'csjwt-client',
    client_secret: 'csjwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKL',
    grant_types: ['client_credentials', DEVICE_CODE_GRANT, 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_jwt',
  },
  {
    // Allowed the extension grants (token exchange, JWT bearer); Basic auth.
    client_id: 'exchange-client',
    client_secret: 'exchange-secret-1',
    grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  // private_key_jwt clients (RFC 7523 §2.2), one per entry of --client-keys;
  // also confidential native clients for the browser login (any loopback port).
  ...Object.entries(clientKeys.clients).map(([clientId, jwks]) => ({
    client_id: clientId,
    jwks: { keys: jwks.keys },
    application_type: 'native',
    grant_types: [
      'client_credentials', DEVICE_CODE_GRANT, 'authorization_code', 'refresh_token',
      TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT,
    ],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'private_key_jwt',
  })),
].map((client) => ({ redirect_uris: [], response_types: [], ...client }));

// --- provider configuration -------------------------------------------------

// Ephemeral signing key (ID Tokens) and cookie keys: avoids the dev keystore
// and makes every run independent.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-es256', alg: 'ES256', use: 'sig' };

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  enabledJWA: {
    idTokenSigningAlgValues: ['ES256'],
    // oidc-provider's defaults plus ES384, PS384 and HS384/HS512 for client assertions.
    clientAuthSigningAlgValues: ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'PS384', 'ES256', 'ES384', 'EdDSA'],
  },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  routes: { code_verification: '/device' },
  // `offline` and `all` are flytekit's default scopes (granted to flytekit-public only).
  scopes: ['openid', 'offline_access', 'profile', 'email', 'offline', 'all'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  async findAccount(_ctx, sub) {
    // The dev login page accepts any login; the login becomes the subject.
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: sub,
          preferred_username: sub,
          email: `${sub}@example.test`,
          email_verified: true,
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: true }, // built-in login/consent pages
    deviceFlow: { enabled: true }, // RFC 8628
    clientCredentials: { enabled: true }, // RFC 6749 §4.4
    revocation: { enabled: true }, // RFC 7009
    introspection: { enabled: true }, // RFC 7662
    // RFC 9449. Nonces are always offered (DPoP-Nonce on responses to
    // requests with a proof); --dpop-nonce makes them required.
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => dpopNonce,
    },
    // Resource indicators (RFC 8707). client_credentials works without any
    // resource, but then oidc-provider silently drops every non-OpenID
    // scope (`scope=api:read` -> no scope) and the token has no audience.
    // So client_credentials requests without `resource` default to
    // DEFAULT_RESOURCE; an explicit `resource=` naming one of
    // RESOURCE_SERVERS also works (an unknown one -> invalid_target). Only
    // one resource per client_credentials request is supported, and the
    // granted scope is the requested scopes that the resource server knows
    // (others, incl. `openid`, are dropped silently; `scope` is omitted
    // from the response when none remain). Device-flow requests get no
    // default resource, so their tokens are plain OpenID/userinfo tokens.
    // Tokens are opaque so that revocation and introspection work
    // (oidc-provider refuses to revoke/introspect JWT access tokens).
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        if (ctx.oidc.params?.grant_type === 'client_credentials') return DEFAULT_RESOURCE;
        return undefined;
      },
      async getResourceServerInfo(_ctx, resourceIndicator) {
        const href = URL.parse(resourceIndicator)?.href;
        const info = RESOURCE_SERVERS.get(href)
          ?? (href && LOOPBACK_RESOURCE.test(href) ? { scope: 'api:read api:write' } : undefined);
        if (!info) throw new errors.InvalidTarget();
        return {
          ...info,
          audience: resourceIndicator,
          accessTokenFormat: 'opaque',
          accessTokenTTL: accessTtl,
        };
      },
      async useGrantedResource() {
        return false;
      },
    },
  },
  // Always rotate refresh tokens. Presenting a rotated (consumed) refresh
  // token again yields invalid_grant and revokes the whole grant (reuse
  // detection), so the newest refresh token dies too.
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTtl,
    ClientCredentials: accessTtl,
    DeviceCode: deviceTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 60 * 60,
    Interaction: 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
  },
};

// --- extension grants -------------------------------------------------------

// Keys that may sign JWT bearer assertions and JWT subject tokens: the
// trusted issuers of --client-keys, and each private_key_jwt client (its
// own assertions, iss = client_id).
const ASSERTION_ALGS = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'];
const assertionKeys = new Map(
  [...Object.entries(clientKeys.trusted_issuers), ...Object.entries(clientKeys.clients)]
    .map(([iss, jwks]) => [iss, createLocalJWKSet({ keys: jwks.keys })]),
);

function one(value, name) {
  if (Array.isArray(value)) throw new errors.InvalidRequest(`${name} must not repeat`);
  return value;
}

function asList(value) {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

// A signed JWT from a trusted issuer, verified for real: signature, `exp`
// (required), `aud` one of `audiences` (when given), `sub` required.
// Returns the claims, or throws invalid_grant.
async function verifyTrustedJwt(token, what, { audiences } = {}) {
  let iss;
  try {
    ({ iss } = decodeJwt(token));
  } catch {
    throw new errors.InvalidGrant(`${what} is not a JWT`);
  }
  const keys = assertionKeys.get(iss);
  if (!keys) throw new errors.InvalidGrant(`${what}: issuer is not trusted`);
  try {
    const { payload } = await jwtVerify(token, keys, {
      issuer: iss,
      audience: audiences,
      algorithms: ASSERTION_ALGS,
      requiredClaims: ['exp', 'sub'],
      clockTolerance: 5,
    });
    return payload;
  } catch (err) {
    throw new errors.InvalidGrant(`${what} is invalid (${err.code || err.name})`);
  }
}

// A new opaque access token for `sub`, issued to the calling client for
// `resource` (default DEFAULT_RESOURCE) with the requested scopes that
// resource server knows. Stored like a client-credentials token, so
// introspection and revocation work on it.
async function issueAccessToken(ctx, { sub, act, resource, extra = {} }) {
  const { provider, client, params } = ctx.oidc;
  const indicator = URL.parse(resource ?? DEFAULT_RESOURCE)?.href;
  const info = RESOURCE_SERVERS.get(indicator);
  if (!info) throw new errors.InvalidTarget();
  const allowed = new Set(info.scope.split(' '));
  const scope = (params.scope || '').split(' ').filter((s) => allowed.has(s)).join(' ') || undefined;
  const token = new provider.ClientCredentials({ client, scope, extra: { sub, ...(act ? { act } : {}), ...extra } });
  token.resourceServer = { ...info, audience: indicator, accessTokenFormat: 'opaque', accessTokenTTL: accessTtl };
  const value = await token.save();
  return { access_token: value, token_type: 'Bearer', expires_in: token.expiration, ...(scope ? { scope } : {}) };
}

// RFC 8693 token exchange. subject_token: an active access token issued by
// this server (looked up in its store), or a JWT signed by a trusted issuer
// (subject_token_type ...:jwt). actor_token likewise, and actor_token_type
// is required with it (and refused without). Only access tokens are issued.
async function tokenExchange(ctx) {
  const { provider, params } = ctx.oidc;
  const subjectToken = one(params.subject_token, 'subject_token');
  const subjectType = one(params.subject_token_type, 'subject_token_type');
  if (!subjectToken || !subjectType) {
    throw new errors.InvalidRequest('subject_token and subject_token_type are required');
  }
  if ((params.actor_token === undefined) !== (params.actor_token_type === undefined)) {
    throw new errors.InvalidRequest('actor_token and actor_token_type go together');
  }
  const requested = one(params.requested_token_type, 'requested_token_type');
  if (requested !== undefined && requested !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens can be requested');
  }

  async function principal(token, type, what) {
    if (type === ACCESS_TOKEN_TYPE) {
      const found = (await provider.AccessToken.find(token)) || (await provider.ClientCredentials.find(token));
      if (!found || found.isExpired) throw new errors.InvalidGrant(`${what} is not an active access token`);
      return found.accountId || found.extra?.sub || `client:${found.clientId}`;
    }
    if (type === JWT_TOKEN_TYPE) {
      return (await verifyTrustedJwt(token, what)).sub;
    }
    throw new errors.InvalidRequest(`unsupported ${what}_type`);
  }

  const sub = await principal(subjectToken, subjectType, 'subject_token');
  const act = params.actor_token === undefined
    ? undefined
    : { sub: await principal(one(params.actor_token, 'actor_token'), one(params.actor_token_type, 'actor_token_type'), 'actor_token') };
  const resources = asList(params.resource);
  if (resources.length > 1) throw new errors.InvalidTarget('only one resource is supported');
  const audience = asList(params.audience);
  const body = await issueAccessToken(ctx, {
    sub, act, resource: resources[0], extra: audience.length ? { requested_audience: audience } : {},
  });
  ctx.body = { ...body, issued_token_type: ACCESS_TOKEN_TYPE };
}

// RFC 7523 §2.1 JWT bearer grant: the assertion is verified against the
// trusted issuer's (or the client's own) keys; `aud` must be this issuer or
// its token endpoint; `exp`, `sub` and `jti` are required, and a `jti`
// already used is refused (RFC 7523 §3 item 7), through the provider's own
// ReplayDetection model.
async function jwtBearer(ctx) {
  const { provider, params } = ctx.oidc;
  const assertion = one(params.assertion, 'assertion');
  if (!assertion) throw new errors.InvalidRequest('assertion is required');
  const claims = await verifyTrustedJwt(assertion, 'assertion', {
    audiences: [provider.issuer, ctx.oidc.urlFor('token')],
  });
  if (!claims.jti) throw new errors.InvalidGrant('assertion has no jti');
  const unique = await provider.ReplayDetection.unique(claims.iss, claims.jti, claims.exp + 5);
  if (!unique) throw new errors.InvalidGrant('assertion replayed (jti already used)');
  ctx.body = await issueAccessToken(ctx, { sub: claims.sub, resource: asList(params.resource)[0] });
}

// --- start ------------------------------------------------------------------

// Bind first so that --port 0 resolves to a concrete port, then build the
// provider with the final issuer and hand it the requests.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));

server.on('error', (err) => {
  console.error(`server.mjs: ${err.message}`);
  process.exit(1);
});

server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('server_error:', err));
  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    tokenExchange,
    ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
      'audience', 'resource', 'scope'],
    ['audience', 'resource'],
  );
  provider.registerGrantType(JWT_BEARER_GRANT, jwtBearer, ['assertion', 'scope', 'resource']);
  handler = provider.callback();

  const ready = {
    issuer,
    port,
    pid: process.pid,
    discovery: `${issuer}/.well-known/openid-configuration`,
    verification_uri: `${issuer}/device`,
    device_ttl: deviceTtl,
    access_ttl: accessTtl,
    default_resource: DEFAULT_RESOURCE,
    dpop_nonce: dpopNonce,
  };
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
