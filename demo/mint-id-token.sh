#!/usr/bin/env bash
# Prints an OpenID Connect ID token, as the demo partner IdP (http://127.0.0.1:4000) would issue it to
# the client `uma-client`: RS256-signed with demo/partner-idp/private-key.pem, whose public key
# verifiers/partner-idp-oidc.jwks.json trusts. Valid for 10 minutes.
#
#   demo/mint-id-token.sh [sub] [npi] [role]     defaults: dr-bob 1234567893 physician
#
# DEMO ONLY: that private key is public, so anyone can mint these tokens. Needs bash and openssl.
set -euo pipefail

if [ $# -gt 3 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: $0 [sub] [npi] [role]   (defaults: dr-bob 1234567893 physician)" >&2
  exit 2
fi
sub=${1:-dr-bob}
npi=${2:-1234567893}
role=${3:-physician}
for v in "$sub" "$npi" "$role"; do
  case $v in
    '' | *[[:cntrl:]]*) echo "$0: claim values must be non-empty, without control characters" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
key="$here/partner-idp/private-key.pem"
# The RFC 7638 thumbprint of the key, as in verifiers/partner-idp-oidc.jwks.json.
kid="waNJkcKfqxPB1wJnirjB3_kz6W8PsHoXMO1CUCUSVhM"
issuer="http://127.0.0.1:4000"
audience="uma-client"

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# A JSON string literal (the values were checked for control characters above).
json_str() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

now=$(date +%s)
jti=$(openssl rand -hex 16)
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$kid")
payload=$(printf '{"iss":"%s","aud":"%s","sub":%s,"iat":%d,"exp":%d,"jti":"%s","npi":%s,"role":%s}' \
  "$issuer" "$audience" "$(json_str "$sub")" "$now" "$((now + 600))" "$jti" "$(json_str "$npi")" "$(json_str "$role")")

signing_input="$(printf '%s' "$header" | b64url).$(printf '%s' "$payload" | b64url)"
signature=$(printf '%s' "$signing_input" | openssl dgst -sha256 -sign "$key" -binary | b64url)
printf '%s.%s\n' "$signing_input" "$signature"
