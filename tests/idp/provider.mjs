// A real OpenID Connect provider (panva/oidc-provider) for Portico's integration tests.
//
//   node tests/idp/provider.mjs --port P --keystore FILE --keys kid1:ALG,kid2:ALG
//
// Prints exactly one line, `ready http://127.0.0.1:<port>`, on stdout once it accepts
// requests, then runs until killed. Everything else goes to stderr.
// See README.md next to this file for the clients, scopes and token shape.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { once } from 'node:events';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';
// The library's own in-memory store under another name: oidc-provider warns at startup
// when it recognises its default adapter, and in-memory state is all a test IdP needs.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

class TestAdapter extends MemoryAdapter {}

// The stdout protocol is a single line, but oidc-provider prints its notices with
// console.info; send all console output to stderr.
console.log = console.info = console.error;

const RESOURCE = 'urn:portico'; // must be an absolute URI; the token `aud` is AUDIENCE
const AUDIENCE = 'portico';
const STAFF_SCOPES = 'jobs:read jobs:read:all jobs:read:amounts ops:read';
const CLIENTS = {
  'staff-rs': { secret: 'staff-rs-secret', alg: 'RS256', scope: STAFF_SCOPES },
  'staff-es': { secret: 'staff-es-secret', alg: 'ES256', scope: STAFF_SCOPES },
  'portal-rs': {
    secret: 'portal-rs-secret', alg: 'RS256', scope: 'jobs:read ops:read', claims: { customer_id: 'C001' },
  },
};
const GENERATORS = {
  RS256: () => crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: () => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
};

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, keystore: { type: 'string' }, keys: { type: 'string' } },
});
if (args.port === undefined || !args.keystore || !args.keys) {
  console.error('usage: node provider.mjs --port P --keystore FILE --keys kid1:ALG[,kid2:ALG...]');
  process.exit(2);
}

// Keys persist across restarts so a test can rotate them: keys named in --keys are
// reused from the keystore file when present, generated (and saved) otherwise.
function loadKeys(file, spec) {
  let generated = false;
  const stored = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')).keys : [];
  const keys = spec.split(',').map((entry) => {
    const [kid, alg] = entry.split(':');
    if (!kid || !GENERATORS[alg]) throw new Error(`bad --keys entry "${entry}" (want kid:RS256 or kid:ES256)`);
    const existing = stored.find((k) => k.kid === kid);
    if (existing) {
      if (existing.alg !== alg) throw new Error(`key "${kid}" in ${file} is ${existing.alg}, not ${alg}`);
      return existing;
    }
    const jwk = { ...GENERATORS[alg]().privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
    stored.push(jwk);
    generated = true;
    return jwk;
  });
  if (generated) {
    // Write-then-rename, so a concurrently starting provider never reads half a file.
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify({ keys: stored }, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
  }
  return keys;
}
const keys = loadKeys(args.keystore, args.keys);

// oidc-provider already signs with the first key of the alg in keystore order (all our keys
// declare alg and use), but naming the kid makes "first listed signs" not depend on that.
function signingKid(alg) {
  const key = keys.find((k) => k.alg === alg);
  if (!key) throw new Error(`no ${alg} key listed in --keys`);
  return key.kid;
}

// The issuer contains the port, so with --port 0 we must bind before building the provider.
const server = http.createServer();
server.listen(Number(args.port), '127.0.0.1');
await once(server, 'listening');
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  adapter: TestAdapter,
  jwks: { keys },
  cookies: { keys: ['portico-test-idp'] }, // no browser flows; set only to keep startup quiet
  // No ID tokens are ever issued, but oidc-provider rejects clients whose (default) ID token
  // alg has no key, which would break an ES256-only key set.
  clientDefaults: { id_token_signed_response_alg: keys[0].alg },
  clients: Object.entries(CLIENTS).map(([id, c]) => ({
    client_id: id,
    client_secret: c.secret,
    scope: c.scope,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  })),
  // oidc-provider enforces a client's `scope` allow-list only for scopes listed here (a
  // disallowed one gives invalid_scope); unlisted scopes are silently left out of tokens.
  scopes: STAFF_SCOPES.split(' '),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Lets a plain client_credentials request (no `resource` param) get a Portico token.
      defaultResource: () => RESOURCE,
      getResourceServerInfo(ctx, resource, client) {
        if (resource !== RESOURCE) throw new errors.InvalidTarget();
        const { alg } = CLIENTS[client.clientId];
        return {
          scope: STAFF_SCOPES,
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg, kid: signingKid(alg) } },
        };
      },
    },
  },
  clientBasedCORS: () => true, // test IdP: don't fail (or warn) on requests that carry an Origin
  extraTokenClaims: (ctx, token) => CLIENTS[token.clientId]?.claims,
  ttl: { ClientCredentials: 60 * 60 },
});

// oidc-provider reports failures only as events; make them visible.
provider.on('server_error', (ctx, err) => console.error('idp: server_error', ctx.method, ctx.path, err));
provider.on('grant.error', (ctx, err) => console.error(`idp: token endpoint ${err.error}: ${err.error_description}`));

server.on('request', provider.callback());
process.stdout.write(`ready ${issuer}\n`);
