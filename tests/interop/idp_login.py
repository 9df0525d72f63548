"""Signs a person in at the partner OpenID Provider (npm oidc-provider, tests/idp) the way a browser
would, over plain HTTP: authorization code with PKCE (S256), the provider's own login and consent
forms, then the code at its token endpoint. Returns the provider's token response (with `id_token`).

Nothing here knows the provider's paths: they come from its discovery document and from the `action`
of the forms it serves; redirects are followed by hand so that the code is read from the redirect
to the client, which is never served.
"""

import base64
import hashlib
import secrets
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

TIMEOUT = 15
# Registered for `uma-client` by tests/idp/idp.mjs; nothing listens there: the code is read from the
# redirect's Location.
UMA_CLIENT_REDIRECT = "http://127.0.0.1:9/uma-client/callback"


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": (a.get("method") or "get").lower(), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_in(issuer, user, client_id, client_secret, redirect_uri, auth_method,
            scope="openid email profile healthcare"):
    """`auth_method` is how the client authenticates at the provider's token endpoint:
    client_secret_post (uma-client) or client_secret_basic (tessera)."""
    http = requests.Session()  # the browser's cookie jar
    disc = http.get(issuer + "/.well-known/openid-configuration", timeout=TIMEOUT).json()
    verifier = _b64url(secrets.token_bytes(32))
    state = _b64url(secrets.token_bytes(12))
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": _b64url(secrets.token_bytes(12)),
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    r = http.get(disc["authorization_endpoint"], params=params, allow_redirects=False, timeout=TIMEOUT)
    code = None
    for _ in range(12):
        if r.status_code in (302, 303):
            location = urljoin(r.url, r.headers["location"])
            if location.startswith(redirect_uri):
                q = parse_qs(urlsplit(location).query)
                if "error" in q:
                    raise RuntimeError(f"the provider refused the sign-in: {q}")
                if q.get("state") != [state]:
                    raise RuntimeError("the provider answered another state")
                code = q["code"][0]
                break
            r = http.get(location, allow_redirects=False, timeout=TIMEOUT)
            continue
        if r.status_code == 200 and "text/html" in r.headers.get("content-type", ""):
            parser = _Forms()
            parser.feed(r.text)
            forms = [f for f in parser.forms if f["method"] == "post"]
            if not forms:
                raise RuntimeError(f"no form on the provider's page {r.url}")
            form = forms[0]
            fields = dict(form["fields"])
            if "login" in fields or "password" in fields:  # the dev login page: any password
                fields.update(login=user, password="interop-any-password")
            r = http.post(urljoin(r.url, form["action"]), data=fields, allow_redirects=False, timeout=TIMEOUT)
            continue
        raise RuntimeError(f"unexpected answer from the provider: {r.status_code} {r.url} {r.text[:300]}")
    if code is None:
        raise RuntimeError("no authorization code after 12 steps")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
    auth = None
    if auth_method == "client_secret_basic":
        auth = (client_id, client_secret)
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    r = http.post(disc["token_endpoint"], data=form, auth=auth, timeout=TIMEOUT)
    if r.status_code != 200:
        raise RuntimeError(f"the provider's token endpoint answered {r.status_code} {r.text[:300]}")
    return r.json()
