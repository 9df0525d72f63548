// The benchmark peer: the npm package oidc-provider (pinned to 9.13.3 in package.json and
// package-lock.json) serving the client_credentials grant on loopback, with ES256-signed JWT access
// tokens (RFC 9068 shape, through resource indicators) and two node:cluster worker processes sharing
// the port. bench/run.sh drives it with the same wrk script shape as Tessera's client_credentials.
//
//   node bench/peer/peer.mjs            PEER_PORT (default 4100), PEER_WORKERS (default 2)
//
// The primary process generates one ES256 key and hands it to both workers, so every token is
// signed by the same key whatever worker answers. Everything is in memory (the default adapter).
// Benchmark only: the client secret is a constant known to the harness.
import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';

const PORT = Number(process.env.PEER_PORT || 4100);
const WORKERS = Number(process.env.PEER_WORKERS || 2);
const ISSUER = `http://127.0.0.1:${PORT}`;
const RESOURCE = 'urn:tessera-bench:api';
export const CLIENT_ID = 'bench-peer-client';
export const CLIENT_SECRET = 'bench-peer-secret-0123456789abcdef0123456789';

if (cluster.isPrimary) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-es256', use: 'sig', alg: 'ES256' };
  let ready = 0;
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork({ PEER_JWK: JSON.stringify(jwk) });
    w.on('message', (m) => {
      if (m === 'listening' && ++ready === WORKERS) console.log(`peer ready on ${ISSUER} (${WORKERS} workers)`);
    });
  }
  cluster.on('exit', (w, code, signal) => {
    // A worker that dies invalidates the run: stop everything so the harness notices.
    console.error(`peer worker ${w.process.pid} exited (${signal || code})`);
    process.exit(1);
  });
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { default: Provider } = await import('oidc-provider');
  const jwk = JSON.parse(process.env.PEER_JWK);
  const provider = new Provider(ISSUER, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'read',
        // the only key is ES256 (the default would be RS256, which no key here can sign)
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [jwk] },
    scopes: ['read'],
    ttl: { ClientCredentials: 3600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'read',
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  // No per-request logging: the server's own work only.
  provider.on('server_error', (ctx, err) => console.error('peer server_error', err));
  const server = provider.listen(PORT, '127.0.0.1');
  server.on('listening', () => process.send && process.send('listening'));
}
