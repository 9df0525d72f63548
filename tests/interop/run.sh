#!/usr/bin/env bash
# Tessera's interoperability suite (issue 9): software that nobody here wrote drives Tessera.
#
#   bash tests/interop/run.sh
#
# 1. installs its peers, pinned: the Python ones from PyPI into tests/interop/.venv
#    (tests/interop/requirements.txt), npm oidc-provider into tests/idp/node_modules (`npm ci`);
# 2. builds Tessera (`cargo build --locked`, debug profile) and starts it on a free loopback port with a
#    configuration, database, verifiers and a copy of the repository's policies in a temporary folder;
# 3. starts the partner OpenID Provider (tests/idp, oidc-provider) on 127.0.0.1:4000, the issuer the
#    demo HEART policy names, and makes the partner SAML IdP's keys and metadata (pysaml2);
# 4. runs each peer's scenario, printing one PASS/FAIL line per check;
# 5. stops everything it started, and exits non-zero if any check of any peer failed, naming the peer.
#
# Needs: cargo, python3 (with venv), node and npm, and Debian's xmlsec1 (pysaml2 signs with it).
# INTEROP_KEEP=1 keeps the temporary folder (configuration, logs, database) for a look afterwards.
# docs/interop.md says what each scenario proves and the differences found.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/interop
VENV=$HERE/.venv
IDP_PORT=4000
IDP_ISSUER=http://127.0.0.1:$IDP_PORT

# The configuration file written below is the whole of Tessera's configuration: no TESSERA_* variable
# of the caller's environment may override it (TESSERA_TEST_* are the Rust tests' own).
for v in $(compgen -e); do
  case $v in TESSERA_TEST_*) ;; TESSERA_*) unset "$v" ;; esac
done

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'interop: %s\n' "$*" >&2; exit 1; }
started=$(date +%s)

for tool in cargo python3 node npm xmlsec1 curl; do
  command -v "$tool" >/dev/null || die "$tool is missing (.ci/run installs it)"
done

say "peers (pinned)"
# The venv is rebuilt whenever requirements.txt changes (its copy inside the venv is the stamp).
if ! cmp -s "$HERE/requirements.txt" "$VENV/requirements.txt" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$HERE/requirements.txt"
  "$VENV/bin/pip" check
  cp "$HERE/requirements.txt" "$VENV/requirements.txt"
fi
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version
print("python-keycloak", version("python-keycloak"), "| pysaml2", version("pysaml2"),
      "| requests", version("requests"), "| lxml", version("lxml"))
EOF
xmlsec1 --version
if [ ! -d "$ROOT/tests/idp/node_modules/oidc-provider" ]; then
  npm ci --prefix "$ROOT/tests/idp" --no-audit --no-fund
fi
echo "oidc-provider $(node -p "require('$ROOT/tests/idp/node_modules/oidc-provider/package.json').version") on node $(node --version)"

say "build (cargo build --locked, debug)"
cargo build --locked --bin tessera
TESSERA=$ROOT/target/debug/tessera
built=$(date +%s)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-interop.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${INTEROP_KEEP:-}" = 1 ]; then echo "interop: kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_http() { # URL SECONDS PID NAME LOG
  local i
  for i in $(seq 1 $(($2 * 5))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { tail -n 40 "$5" >&2; die "$4 exited before answering $1"; }
    sleep 0.2
  done
  tail -n 40 "$5" >&2
  die "$4 did not answer $1 within $2 s"
}

say "setup in $WORK"
PORT=$(free_port)
ISSUER=http://127.0.0.1:$PORT
port_busy "$IDP_PORT" && die "port $IDP_PORT is taken: the interop suite runs the partner OpenID Provider there (the demo policy names http://127.0.0.1:$IDP_PORT)"
secret() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))'; }
RS_ID=interop-rs
RS_SECRET=$(secret)
RS_POST_ID=interop-rs-post
RS_POST_SECRET=$(secret)
CLIENT_ID=uma-client
CLIENT_SECRET=$(secret)
IDP_CLIENT_SECRET=$(secret)
IDP_TESSERA_SECRET=$(secret)
mkdir -p "$WORK/verifiers" "$WORK/saml" "$WORK/results"
cp -R "$ROOT/policies" "$WORK/policies"

# The partner SAML IdP: a key pair, its pysaml2 configuration, and the metadata Tessera trusts.
"$VENV/bin/python" "$HERE/saml_idp.py" setup "$WORK/saml" "$ISSUER" "$WORK/verifiers/partner-idp-saml.metadata.xml"

# The verifier ids must stay `partner-idp-oidc` and `partner-idp-saml`: policies/trust.cedar refuses
# claims vouched for by any other verifier.
cat >"$WORK/verifiers/partner-idp-oidc.toml" <<EOF
# The partner OpenID Provider of the interop suite: npm oidc-provider (tests/idp), a fresh key per run,
# found through its discovery document.
format = "oidc"
issuer = "$IDP_ISSUER"
audiences = ["$CLIENT_ID"]
allowed_clients = ["$CLIENT_ID"]
algorithms = ["RS256"]
may_assert = ["npi", "role", "email", "email_verified"]
[keys]
discovery = true
[[claims]]
from = "npi"
type = "string"
[[claims]]
from = "role"
type = "string"
[[claims]]
from = "email"
type = "string"
[[claims]]
from = "email_verified"
type = "bool"
EOF
cat >"$WORK/verifiers/partner-idp-saml.toml" <<EOF
# The partner SAML IdP of the interop suite: pysaml2, keys made for this run, its own metadata.
# No \`algorithms\`: the defaults (RSA-SHA256, ECDSA-SHA256), so SHA-1 is refused as shipped.
format = "saml"
issuer = "https://partner-idp.test"
allowed_clients = ["$CLIENT_ID"]
max_age_secs = 600
single_use = true
may_assert = ["npi", "role", "email", "groups"]
[keys]
metadata_file = "partner-idp-saml.metadata.xml"
[[claims]]
from = "npi"
type = "string"
[[claims]]
from = "role"
type = "string"
[[claims]]
from = "urn:mace:dir:attribute-def:mail"
to = "email"
type = "string"
[[claims]]
from = "groups"
type = "set"
EOF

CONFIG=$WORK/tessera.toml
cat >"$CONFIG" <<EOF
issuer = "$ISSUER"
listen = "127.0.0.1:$PORT"
database_url = "sqlite://$WORK/tessera.db"
policies_dir = "$WORK/policies"
verifiers_dir = "$WORK/verifiers"
policy_schema = "$ROOT/schemas/tessera.cedarschema"
policy_reload_secs = 1
log = "info"
log_format = "json"

[registration]
mode = "closed"

# The resource server of the scenarios, bound to the resource owner alice (its client_credentials
# tokens with scope uma_protection are alice's PATs), as demo-rs is in the demo configuration.
[[clients]]
client_id = "$RS_ID"
client_secret = "$RS_SECRET"
client_name = "Interop resource server (python-keycloak)"
token_endpoint_auth_method = "client_secret_basic"
grant_types = ["client_credentials"]
scope = "uma_protection"
owner = "alice"

# The same, authenticating as python-keycloak's own token request does (client_secret_post).
[[clients]]
client_id = "$RS_POST_ID"
client_secret = "$RS_POST_SECRET"
client_name = "Interop resource server (client_secret_post)"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["client_credentials"]
scope = "uma_protection"
owner = "alice"

# The requesting party's application: redeems tickets, pushes ID tokens and SAML assertions.
[[clients]]
client_id = "$CLIENT_ID"
client_secret = "$CLIENT_SECRET"
client_name = "Interop UMA client"
token_endpoint_auth_method = "client_secret_basic"
grant_types = ["urn:ietf:params:oauth:grant-type:uma-ticket"]
EOF
"$TESSERA" --config "$CONFIG" config check >/dev/null
"$TESSERA" --config "$CONFIG" verifiers check
"$TESSERA" --config "$CONFIG" users add alice <<<"interop-alice-password-$(secret)" >/dev/null

say "start Tessera on $ISSUER and the partner OpenID Provider on $IDP_ISSUER"
"$TESSERA" --config "$CONFIG" serve >"$WORK/tessera.log" 2>&1 &
pids+=($!)
TESSERA_PID=$!
IDP_PORT=$IDP_PORT IDP_ISSUER=$IDP_ISSUER IDP_REDIRECTS="$ISSUER/claims/callback" \
  IDP_CLIENT_SECRET=$IDP_CLIENT_SECRET IDP_TESSERA_SECRET=$IDP_TESSERA_SECRET \
  node "$ROOT/tests/idp/idp.mjs" >"$WORK/idp.log" 2>&1 &
pids+=($!)
IDP_PID=$!
wait_http "$ISSUER/readyz" 30 "$TESSERA_PID" tessera "$WORK/tessera.log"
wait_http "$IDP_ISSUER/.well-known/openid-configuration" 30 "$IDP_PID" "oidc-provider" "$WORK/idp.log"

export INTEROP_WORK=$WORK INTEROP_ISSUER=$ISSUER INTEROP_LOG=$WORK/tessera.log INTEROP_TESSERA_BIN=$TESSERA \
  INTEROP_CONFIG=$CONFIG RS_ID RS_SECRET RS_POST_ID RS_POST_SECRET CLIENT_ID CLIENT_SECRET IDP_ISSUER IDP_CLIENT_SECRET \
  IDP_TESSERA_SECRET SAML_DIR=$WORK/saml POLICIES_DIR=$WORK/policies

peers=(keycloak oidc saml)
failed=()
for peer in "${peers[@]}"; do
  say "peer: $peer"
  if ! timeout 120 "$VENV/bin/python" "$HERE/peer_$peer.py"; then
    failed+=("$peer")
  fi
done

now=$(date +%s)
if [ ${#failed[@]} -gt 0 ]; then
  say "last lines of Tessera's log"
  tail -n 30 "$WORK/tessera.log"
fi
say "summary (wall time: $((now - started)) s in all, $((now - built)) s after the build)"
# A scenario that left no results did not finish: it counts as failed whatever its exit status.
"$VENV/bin/python" - "$WORK/results" "${peers[@]}" <<'EOF' || [ ${#failed[@]} -gt 0 ] || failed+=("(a scenario left no results)")
import json, sys
folder, peers = sys.argv[1], sys.argv[2:]
passed = failed = 0
for peer in peers:
    try:
        with open(f"{folder}/{peer}.json") as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = {"passed": 0, "failed": 1, "failures": ["the scenario did not finish"]}
    passed += r["passed"]
    failed += r["failed"]
    print(f"  {peer:9} {'ok  ' if not r['failed'] else 'FAIL'} {r['passed']} checks passed, {r['failed']} failed"
          + "".join(f"\n              - {f}" for f in r.get("failures", [])))
print(f"interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
if [ ${#failed[@]} -gt 0 ]; then
  echo "interop: FAILED: ${failed[*]} (INTEROP_KEEP=1 keeps the logs and configuration)" >&2
  exit 1
fi
