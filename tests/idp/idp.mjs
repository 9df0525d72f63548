// A real OpenID Provider for Tessera's tests (and demos) of interactive claims gathering.
//
// It is panva's certified `oidc-provider` (pinned in package.json), configured here with two clients,
// two people and the development login and consent pages, which accept any password. TEST/DEMO ONLY:
// never expose it beyond loopback.
//
//   npm ci --prefix tests/idp
//   node tests/idp/idp.mjs                       # http://127.0.0.1:4000, a fresh RSA key
//
// Environment (all optional):
//   IDP_PORT             port on 127.0.0.1 (default 4000)
//   IDP_ISSUER           issuer (default http://127.0.0.1:$IDP_PORT)
//   IDP_REDIRECTS        comma-separated redirect URIs of both clients
//                        (default http://127.0.0.1:8080/claims/callback, Tessera's demo callback)
//   IDP_JWK_FILE         a private JWK (JSON) to sign ID tokens with; default: an RSA-2048 key
//                        generated at start (so its public half is only at {issuer}/jwks)
//   IDP_TESSERA_SECRET   client_secret of the client `tessera` (default tessera-demo-secret-change-me,
//                        the one verifiers/partner-idp-oidc.toml names)
//   IDP_CLIENT_SECRET    client_secret of the client `uma-client` (default uma-client-secret)
//
// The demo partner IdP of the README, issuer http://127.0.0.1:4000, signing with the demo key that
// verifiers/partner-idp-oidc.toml trusts (kid waNJkcKfqxPB1wJnirjB3_kz6W8PsHoXMO1CUCUSVhM; that key
// is PUBLIC, demo only):
//
//   IDP_JWK_FILE=demo/partner-idp/private-jwk.json node tests/idp/idp.mjs
//
// Clients:
//   tessera     Tessera itself as relying party (browser sign-in during claims gathering):
//               client_secret_basic, authorization_code, redirect URIs from IDP_REDIRECTS.
//   uma-client  a UMA client that gets an ID token here and pushes it to Tessera as a claim token:
//               client_secret_post, authorization_code, the same redirect URIs plus
//               http://127.0.0.1:9/uma-client/callback (never served: tests read the code from the
//               redirect's Location).
// People (sign in as either, any password): alice, a physician (npi 1234567893, role physician);
// bob, a patient. Scopes: openid, email, profile, healthcare (npi, role), offline_access. The claims
// of the requested scopes are put in the ID token itself (conformIdTokenClaims: false), which is what
// a verifier of ID tokens needs.
//
// Cookies: oidc-provider's defaults are HttpOnly, SameSite=Lax, and Secure only over https, so the
// flow works in a browser over plain http on 127.0.0.1 (Tessera on another port of the same host is
// the same site, so Lax cookies come along on the redirects).
//
// It prints one line `listening <issuer>` on stdout when ready, and exits on SIGTERM/SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const env = (name, fallback) => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
};

const PORT = Number(env('IDP_PORT', '4000'));
const ISSUER = env('IDP_ISSUER', `http://127.0.0.1:${PORT}`);
const REDIRECTS = env('IDP_REDIRECTS', 'http://127.0.0.1:8080/claims/callback')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const TESSERA_SECRET = env('IDP_TESSERA_SECRET', 'tessera-demo-secret-change-me');
const CLIENT_SECRET = env('IDP_CLIENT_SECRET', 'uma-client-secret');
const UMA_CLIENT_CALLBACK = 'http://127.0.0.1:9/uma-client/callback';

function signingKey() {
  const file = env('IDP_JWK_FILE', undefined);
  if (file) {
    const jwk = JSON.parse(readFileSync(file, 'utf8'));
    if (!jwk.d) throw new Error(`${file} is not a private JWK`);
    return { alg: 'RS256', use: 'sig', ...jwk };
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `idp-${randomBytes(6).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
}

const PEOPLE = {
  alice: {
    sub: 'alice',
    name: 'Dr Alice Ames',
    given_name: 'Alice',
    family_name: 'Ames',
    email: 'alice@hospital.example',
    email_verified: true,
    npi: '1234567893',
    role: 'physician',
  },
  bob: {
    sub: 'bob',
    name: 'Bob Brown',
    given_name: 'Bob',
    family_name: 'Brown',
    email: 'bob@example.org',
    email_verified: false,
    role: 'patient',
  },
};

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: 'tessera',
      client_secret: TESSERA_SECRET,
      client_name: 'Tessera',
      redirect_uris: REDIRECTS,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'uma-client',
      client_secret: CLIENT_SECRET,
      client_name: 'UMA client',
      redirect_uris: [...new Set([...REDIRECTS, UMA_CLIENT_CALLBACK])],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  jwks: { keys: [signingKey()] },
  scopes: ['openid', 'email', 'profile', 'healthcare', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
    healthcare: ['npi', 'role'],
  },
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    const person = PEOPLE[id];
    if (!person) return undefined;
    return { accountId: id, async claims() { return { ...person }; } };
  },
  features: { devInteractions: { enabled: true } },
  // Signed cookies with a key of this run (the provider warns without keys).
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { AuthorizationCode: 60, IdToken: 600, AccessToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
});

const server = provider.listen(PORT, '127.0.0.1');
server.on('listening', () => console.log(`listening ${ISSUER}`));
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
