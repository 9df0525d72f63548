"""Peer 2: a partner OpenID Provider, npm oidc-provider (tests/idp), issuer http://127.0.0.1:4000.

alice (a physician) signs in at the provider through its own flow (authorization code + PKCE, its
login and consent forms), scripted over HTTP, for the client `uma-client`. The real ID token it
issues is pushed to Tessera's token endpoint as a claim token
(claim_token_format http://openid.net/specs/openid-connect-core-1_0.html#IDToken) and yields an RPT
for a FHIR Observation under the demo HEART policy (policies/heart/fhir.cedar#physicians-read).
An ID token the same provider issued to another client (`tessera`) is refused when uma-client pushes
it (wrong audience): 403 need_info, no RPT.

Tessera's verifier knows the provider only by its issuer: keys come from its discovery document and
JWKS (a new key each run).
"""

import json

from common import ID_TOKEN_FORMAT, Checks, Tessera, b64url, body, env, exchange, is_refusal, is_rpt, jwt_claims
from idp_login import UMA_CLIENT_REDIRECT, sign_in

OBSERVATION = "http://hl7.org/fhir/Observation"


def scenario(c):
    t = Tessera()
    idp = env("IDP_ISSUER")

    disc = t.discovery
    c.check(
        "Tessera's discovery lists the ID token format among claim_token_formats_supported",
        ID_TOKEN_FORMAT in disc.get("claim_token_formats_supported", []),
        disc,
    )

    tokens = sign_in(idp, "alice", "uma-client", env("IDP_CLIENT_SECRET"), UMA_CLIENT_REDIRECT, "client_secret_post")
    id_token = tokens.get("id_token", "")
    claims = jwt_claims(id_token) if id_token.count(".") == 2 else {}
    c.require(
        "oidc-provider issues alice an ID token for uma-client (code + PKCE, its login and consent forms)",
        claims.get("iss") == idp and claims.get("aud") == "uma-client" and claims.get("sub") == "alice"
        and claims.get("role") == "physician" and claims.get("npi") == "1234567893",
        claims,
    )
    c.note(f"ID token claims: { {k: claims[k] for k in sorted(claims) if k not in ('at_hash',)} }")

    pat = t.pat(c)["access_token"]
    r = t.register(pat, {"name": "Observation 7 (peer oidc)", "type": OBSERVATION, "resource_scopes": ["read", "write"]})
    rid = (body(r) or {}).get("_id")
    c.require("the resource server registers a FHIR Observation: 201 {_id}", r.status_code == 201 and rid, exchange(r))

    # Without claims: need_info, naming the provider as the issuer that can supply npi and role.
    r = t.redeem(t.ticket(c, pat, rid, ["read"], "read"))
    b = body(r) or {}
    issuers = {i for rc in b.get("required_claims", []) for i in rc.get("issuer", [])}
    names = {rc.get("name") for rc in b.get("required_claims", [])}
    c.check(
        "no claims: 403 need_info naming the provider's issuer, npi and role, with a new ticket",
        is_refusal(r) and b.get("ticket") and idp in issuers and {"npi", "role"} <= names,
        exchange(r),
    )

    # The real ID token, pushed with the new ticket: an RPT.
    r = t.redeem(b.get("ticket", ""), id_token, ID_TOKEN_FORMAT)
    c.require("alice's ID token pushed as claim_token: 200 RPT (physicians-read)", is_rpt(r), exchange(r))
    rpt = r.json()["access_token"]
    c.check("the RPT answer has no `scope` member (UMA Grant §3.3.5)", "scope" not in r.json(), exchange(r))
    r = t.introspect(pat, rpt)
    b = body(r) or {}
    c.check(
        "introspection by the resource server: active, read on the Observation, for uma-client",
        r.status_code == 200 and b.get("active") is True and b.get("client_id") == "uma-client"
        and b.get("permissions") == [{"resource_id": rid, "resource_scopes": ["read"]}],
        exchange(r),
    )

    # `write` is forbidden to everyone by fhir-no-write, whoever pushes the token.
    r = t.redeem(t.ticket(c, pat, rid, ["write"], "write"), id_token, ID_TOKEN_FORMAT)
    c.check("the same ID token for `write`: 403 request_denied (fhir-no-write), no RPT",
            is_refusal(r, "request_denied"), exchange(r))

    # An ID token of the same provider, for the same person, issued to another client (`tessera`).
    other = sign_in(idp, "alice", "tessera", env("IDP_TESSERA_SECRET"), t.issuer + "/claims/callback",
                    "client_secret_basic")
    other_claims = jwt_claims(other.get("id_token", "x.e30.x"))
    c.require(
        "oidc-provider issues alice an ID token for the client `tessera` (aud tessera)",
        other_claims.get("aud") == "tessera" and other_claims.get("iss") == idp and other_claims.get("role") == "physician",
        other_claims,
    )
    r = t.redeem(t.ticket(c, pat, rid, ["read"], "read"), other["id_token"], ID_TOKEN_FORMAT)
    c.check("that token pushed by uma-client: 403 need_info, no RPT", is_refusal(r), exchange(r))
    reason = t.refusal_reason(r)
    c.check("Tessera's log says why: WrongAudience", reason == "WrongAudience", f"reason {reason!r}")

    # A forged copy: alice's genuine token with its payload changed (npi) and the signature kept.
    head, payload, sig = id_token.split(".")
    forged_claims = dict(claims, npi="9999999999")
    forged_payload = b64url(json.dumps(forged_claims).encode())
    r = t.redeem(t.ticket(c, pat, rid, ["read"], "read"), f"{head}.{forged_payload}.{sig}", ID_TOKEN_FORMAT)
    c.check("alice's ID token with one claim altered: 403 need_info, no RPT", is_refusal(r), exchange(r))
    reason = t.refusal_reason(r)
    c.check("Tessera's log says why: BadSignature", reason == "BadSignature", f"reason {reason!r}")


if __name__ == "__main__":
    Checks("oidc").run(scenario)
