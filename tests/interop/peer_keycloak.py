"""Peer 1: python-keycloak's KeycloakUMA (PyPI python-keycloak 7.1.1) as the resource server's UMA
library, driven through its standards-based calls only.

The library was written for Keycloak: it fetches its own token and its discovery document from
Keycloak's realm paths. So, as a resource server would against any standard UMA server (the recipe
of the team's ecosystem research, A1.1), the scenario
  * gets the PAT itself: client_credentials at Tessera's token endpoint, client_secret_basic, scope
    uma_protection, for a resource server bound to the resource owner alice (`owner = "alice"`);
  * hands the library Tessera's discovery document, `{issuer}/.well-known/uma2-configuration`;
then lets the library register, read, list, update and delete resources and create permission
tickets. A separate UMA client (plain `requests`, client_secret_basic) redeems the ticket at the
token endpoint (UMA grant, pushing a real ID token from the partner OpenID Provider of peer 2), and
the resource server introspects the RPT.

Where the library expects Keycloak rather than UMA, the check asserts what is observed, so that a
change on either side is noticed; docs/interop.md lists each of these differences.
"""

import json

from keycloak import KeycloakOpenID, KeycloakOpenIDConnection, KeycloakUMA
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakError, KeycloakGetError, KeycloakPostError, KeycloakPutError
from keycloak.uma_permissions import UMAPermission

from common import ID_TOKEN_FORMAT, Checks, Tessera, body, env, exchange, is_refusal, is_rpt
from idp_login import UMA_CLIENT_REDIRECT, sign_in

OBSERVATION = "http://hl7.org/fhir/Observation"


def raised(call):
    """(result, exception) of a library call."""
    try:
        return call(), None
    except KeycloakError as e:
        return None, e


def scenario(c):
    t = Tessera()
    rs_id, _ = t.rs

    # Discovery, as the library reads it, from the standard location.
    disc = t.discovery
    c.require(
        "discovery at {issuer}/.well-known/uma2-configuration names the UMA endpoints the library uses",
        disc.get("issuer") == t.issuer
        and all(disc.get(k, "").startswith(t.issuer) for k in
                ("token_endpoint", "resource_registration_endpoint", "permission_endpoint", "introspection_endpoint")),
        disc,
    )

    # Known difference: the library's own token request. Its form is captured on the wire and then
    # replayed, byte for byte, at the token endpoint of the discovery document.
    kc = KeycloakOpenID(server_url=t.issuer + "/", realm_name="unused", client_id=env("RS_POST_ID"),
                        client_secret_key=env("RS_POST_SECRET"))
    wire = []
    kc.connection._s.hooks["response"].append(lambda response, *args, **kwargs: wire.append(response))
    _, e = raised(lambda: kc.token(grant_type="client_credentials"))
    c.check("known difference: the library's own PAT request (KeycloakOpenID.token) goes to "
            "{server}/realms/unused/protocol/openid-connect/token: 404 at Tessera",
            isinstance(e, KeycloakPostError) and e.response_code == 404 and len(wire) == 1, repr(e))
    form = wire[0].request.body if wire else ""
    form = form.decode() if isinstance(form, bytes) else form
    replay = lambda f: t.http.post(t.endpoint("token_endpoint"), data=f, timeout=15,  # noqa: E731
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    r = replay(form)
    c.check("that exact form at Tessera's token endpoint (client_secret_post, empty username, password, code and "
            "redirect_uri, scope=openid): 400 invalid_scope, Tessera offers no `openid` scope",
            "scope=openid" in form and "code=&" in form and r.status_code == 400
            and (body(r) or {}).get("error") == "invalid_scope", exchange(r))
    r = replay(form.replace("scope=openid", "scope="))
    c.check("the same form with an empty scope (absent, RFC 6749 §3.1): 200, a PAT with scope uma_protection",
            r.status_code == 200 and (body(r) or {}).get("scope") == "uma_protection", exchange(r))

    pat = t.pat(c)
    connection = KeycloakOpenIDConnection(server_url=t.issuer + "/", realm_name="unused", client_id=rs_id, token=pat)
    uma = KeycloakUMA(connection=connection)
    uma._well_known = disc  # instead of {server}/realms/{realm}/.well-known/uma2-configuration (Keycloak's path)

    # Known difference: the library's own discovery fetch uses Keycloak's realm path.
    fresh = KeycloakUMA(connection=connection)
    _, e = raised(lambda: fresh.uma_well_known)
    c.check(
        "known difference: the library's own discovery fetch (GET {server}/realms/unused/.well-known/"
        "uma2-configuration) is 404 at Tessera",
        isinstance(e, KeycloakGetError) and e.response_code == 404,
        repr(e),
    )

    # Every answer the library receives, to check what it does not show (status, headers).
    seen = []
    connection._s.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response))

    # resource_set_create: the library expects 201 and a JSON object with _id.
    created, e = raised(lambda: uma.resource_set_create(
        {"name": "Observation 42", "type": OBSERVATION, "resource_scopes": ["read", "write"]}))
    rid = (created or {}).get("_id")
    c.require("resource_set_create: 201 {_id}", e is None and rid, repr(e) if e else created)
    c.check("…with Location: {resource_registration_endpoint}/{_id} (FedAuthz §3.2.1)",
            seen[-1].status_code == 201
            and seen[-1].headers.get("location") == f"{disc['resource_registration_endpoint']}/{rid}",
            exchange(seen[-1]))
    decoy, e = raised(lambda: uma.resource_set_create(
        {"name": "Observation 4", "type": OBSERVATION, "resource_scopes": ["read"]}))
    decoy_id = (decoy or {}).get("_id")
    c.require("resource_set_create of a second resource, `Observation 4`", e is None and decoy_id,
              repr(e) if e else decoy)
    other, e = raised(lambda: uma.resource_set_create(
        {"name": "Lab report", "type": "http://hl7.org/fhir/DiagnosticReport", "resource_scopes": ["read"]}))
    other_id = (other or {}).get("_id")
    c.require("resource_set_create of a third resource of another type", e is None and other_id,
              repr(e) if e else other)

    # resource_set_read
    got, e = raised(lambda: uma.resource_set_read(rid))
    c.check(
        "resource_set_read: 200, the description as registered with its _id",
        e is None and got.get("_id") == rid and got.get("name") == "Observation 42" and got.get("type") == OBSERVATION
        and sorted(got.get("resource_scopes", [])) == ["read", "write"],
        repr(e) if e else got,
    )

    # resource_set_list_ids, and the filters Tessera supports (name, exactName, type, first, max).
    ids, e = raised(lambda: uma.resource_set_list_ids())
    c.check("resource_set_list_ids(): 200, exactly the three resources of this owner and resource server",
            e is None and sorted(ids) == sorted([rid, decoy_id, other_id]), repr(e) if e else ids)
    ids, e = raised(lambda: uma.resource_set_list_ids(name="Observation 4", exact_name=True, maximum=1))
    c.check("resource_set_list_ids(name='Observation 4', exact_name=True, maximum=1): only that one",
            e is None and ids == [decoy_id], repr(e) if e else ids)
    ids, e = raised(lambda: uma.resource_set_list_ids(name="Observation"))
    c.check("resource_set_list_ids(name='Observation'): the two Observations (substring match)",
            e is None and sorted(ids) == sorted([rid, decoy_id]), repr(e) if e else ids)
    ids, e = raised(lambda: uma.resource_set_list_ids(resource_type="http://hl7.org/fhir/DiagnosticReport"))
    c.check("resource_set_list_ids(resource_type=DiagnosticReport): only the lab report",
            e is None and ids == [other_id], repr(e) if e else ids)
    page1, e1 = raised(lambda: uma.resource_set_list_ids(maximum=2))
    page2, e2 = raised(lambda: uma.resource_set_list_ids(first=2, maximum=2))
    c.check("resource_set_list_ids(first=, maximum=): pages that add up to the three ids",
            e1 is None and e2 is None and len(page1) == 2 and len(page2) == 1
            and sorted(page1 + page2) == sorted([rid, decoy_id, other_id]),
            f"{page1!r} {page2!r} {e1!r} {e2!r}")
    for kwargs in ({"uri": "/obs/42"}, {"owner": "alice"}, {"scope": "read"}, {"matchingUri": True}):
        _, e = raised(lambda: uma.resource_set_list_ids(**kwargs))
        c.check(f"resource_set_list_ids({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): a filter Tessera "
                "does not support is 400 invalid_request, never silently ignored (A-31)",
                isinstance(e, KeycloakGetError) and e.response_code == 400
                and b"invalid_request" in (e.response_body or b""), repr(e))
    for resource in uma.resource_set_list():
        if resource.get("_id") not in (rid, decoy_id, other_id):
            c.check("resource_set_list() yields only this owner's resources", False, resource)
            break
    else:
        c.check("resource_set_list(): list_ids then one read per id, every description readable", True)

    # permission_ticket_create, with resource_id set (no lookup): the library POSTs a JSON array.
    p = UMAPermission(resource="Observation 42", scope="read")
    p.resource_id = rid
    answer, e = raised(lambda: uma.permission_ticket_create([p]))
    ticket = (answer or {}).get("ticket")
    c.require("permission_ticket_create([read on the resource id]): {ticket}", e is None and ticket,
              repr(e) if e else answer)

    # The UMA client redeems it: first with no claims (need_info), then with a real ID token.
    r = t.redeem(ticket)
    b = body(r) or {}
    c.check("the client redeems the ticket with no claims: 403 need_info with a new ticket and required_claims",
            is_refusal(r) and b.get("ticket") and b.get("required_claims"), exchange(r))
    id_token = sign_in(env("IDP_ISSUER"), "alice", "uma-client", env("IDP_CLIENT_SECRET"), UMA_CLIENT_REDIRECT,
                       "client_secret_post")["id_token"]
    r = t.redeem(b.get("ticket", ""), id_token, ID_TOKEN_FORMAT)
    c.require("the client pushes alice's ID token (oidc-provider) with the new ticket: 200 RPT", is_rpt(r), exchange(r))
    rpt = r.json()["access_token"]
    r = t.introspect(pat["access_token"], rpt)
    b = body(r) or {}
    c.check("the resource server introspects the RPT with its PAT: active, read on the library's resource",
            r.status_code == 200 and b.get("active") is True
            and b.get("permissions") == [{"resource_id": rid, "resource_scopes": ["read"]}], exchange(r))

    # The library's own name lookup (no resource_id): GET {rreg}?name=…&exactName=true&max=1. With a
    # decoy whose name is a prefix of the other's, an AS that ignored the filters would mis-target.
    lookup = UMAPermission(resource="Observation 4", scope="read")
    answer, e = raised(lambda: uma.permission_ticket_create([lookup]))
    ticket = (answer or {}).get("ticket")
    c.require("permission_ticket_create by name (the library's lookup with exactName=true&max=1): {ticket}",
              e is None and ticket, repr(e) if e else answer)
    r = t.redeem(ticket, id_token, ID_TOKEN_FORMAT)
    rpt_by_name = (body(r) or {}).get("access_token")
    r = t.introspect(pat["access_token"], rpt_by_name or "none")
    b = body(r) or {}
    c.check("…its RPT names `Observation 4`, the resource the lookup found, not `Observation 42`",
            b.get("active") is True and b.get("permissions") == [{"resource_id": decoy_id, "resource_scopes": ["read"]}],
            exchange(r))
    _, e = raised(lambda: uma.permission_ticket_create([UMAPermission(resource="No such resource", scope="read")]))
    c.check("permission_ticket_create for an unknown name: the library raises before asking for a ticket",
            isinstance(e, KeycloakPostError), repr(e))
    p = UMAPermission(resource="Observation 42", scope="print")
    p.resource_id = rid
    _, e = raised(lambda: uma.permission_ticket_create([p]))
    c.check("permission_ticket_create for a scope the resource lacks: 400 invalid_scope",
            isinstance(e, KeycloakPostError) and e.response_code == 400 and b"invalid_scope" in (e.response_body or b""),
            repr(e))

    # resource_set_update: Tessera answers as UMA FedAuthz §3.2.3 says (200 {_id}); the library only
    # accepts 204, so it raises although the update happened.
    new = {"name": "Observation 42 (amended)", "type": OBSERVATION, "resource_scopes": ["read", "write"]}
    _, e = raised(lambda: uma.resource_set_update(rid, new))
    c.check("known difference: resource_set_update raises KeycloakPutError on Tessera's 200 {\"_id\"} "
            "(UMA FedAuthz §3.2.3; the library expects 204)",
            isinstance(e, KeycloakPutError) and e.response_code == 200 and body_of(e) == {"_id": rid}, repr(e))
    got, e = raised(lambda: uma.resource_set_read(rid))
    c.check("…and the update took effect: resource_set_read shows the new name",
            e is None and got.get("name") == "Observation 42 (amended)", repr(e) if e else got)
    c.note("resource_set_update raised KeycloakPutError(200, {\"_id\": …}) although the update succeeded: "
           "callers must treat that error as success (docs/interop.md)")

    # resource_set_delete: 204, as the library expects; the RPT on it stops working.
    result, e = raised(lambda: uma.resource_set_delete(rid))
    c.check("resource_set_delete: 204 with no body, the library returns {}",
            e is None and result == {} and seen[-1].status_code == 204 and seen[-1].content == b"",
            repr(e) if e else result)
    _, e = raised(lambda: uma.resource_set_read(rid))
    c.check("resource_set_read of the deleted resource: 404", isinstance(e, KeycloakGetError) and e.response_code == 404,
            repr(e))
    r = t.introspect(pat["access_token"], rpt)
    c.check("the RPT on the deleted resource introspects inactive", (body(r) or {}) == {"active": False}, exchange(r))
    ids, e = raised(lambda: uma.resource_set_list_ids())
    c.check("resource_set_list_ids() no longer lists it", e is None and rid not in ids, repr(e) if e else ids)

    standard = tuple(disc[k] for k in ("resource_registration_endpoint", "permission_endpoint"))
    others = [r.request.url for r in seen if not r.request.url.startswith(standard)]
    c.check(f"every request KeycloakUMA sent ({len(seen)}) went to an endpoint of Tessera's discovery document",
            seen and not others, others)

    # Keycloak-only calls. Each is asserted as observed (docs/interop.md has the decisions).
    _, e = raised(lambda: uma.permissions_check(id_token, [UMAPermission(resource="Observation 4", scope="read")]))
    c.check("known difference: permissions_check (Keycloak's ticketless uma-ticket grant, response_mode=decision, "
            "the user's token as Bearer) raises KeycloakAuthenticationError: 401 invalid_client",
            isinstance(e, KeycloakAuthenticationError) and e.response_code == 401
            and body_of(e) == {"error": "invalid_client", "error_description": "client authentication failed"},
            repr(e))
    raw = t.http.post(t.endpoint("token_endpoint"), data={
        "grant_type": "urn:ietf:params:oauth:grant-type:uma-ticket", "permission": "Observation 4#read",
        "response_mode": "decision"}, auth=t.client, timeout=15)
    c.check("the same request with uma-client's own client authentication and no ticket: 400 invalid_request",
            raw.status_code == 400 and (body(raw) or {}).get("error") == "invalid_request", exchange(raw))
    try:
        uma.policy_query()
        missing = None
    except KeyError as k:
        missing = k.args[0]
    c.check("known difference: discovery has no policy_endpoint (Keycloak's user-managed permission API), so "
            "policy_query / policy_resource_create / policy_update / policy_delete raise KeyError before any request",
            "policy_endpoint" not in disc and missing == "policy_endpoint", f"{sorted(disc)} {missing!r}")
    raw = t.http.post(t.issuer + "/realms/unused/protocol/openid-connect/token",
                      data={"grant_type": "urn:ietf:params:oauth:grant-type:uma-ticket", "permission": "x#read",
                            "response_mode": "permissions"}, auth=t.client, timeout=15)
    c.check("known difference: KeycloakOpenID.uma_permissions / has_uma_access post to Keycloak's realm token "
            "path: 404 at Tessera", raw.status_code == 404, exchange(raw))


def body_of(error):
    try:
        return json.loads(error.response_body)
    except (TypeError, ValueError):
        return None


if __name__ == "__main__":
    Checks("keycloak").run(scenario)
