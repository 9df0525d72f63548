"""What the interop scenarios share: PASS/FAIL checks, Tessera's standard endpoints as a resource
server and a UMA client call them (plain `requests`, nothing of Tessera's), and Tessera's log.

run.sh sets the environment (Tessera's issuer, the clients' credentials, the work folder).
"""

import base64
import json
import os
import sys
import time
import traceback

import requests

UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"
ID_TOKEN_FORMAT = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken"
SAML_FORMAT = "urn:oasis:names:tc:SAML:2.0:assertion"
TIMEOUT = 15


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: run the suite with `bash tests/interop/run.sh`")
    return value


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_claims(token):
    """The payload of a compact JWS, unverified (only to show and check what the IdP issued)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def body(response):
    try:
        return response.json()
    except ValueError:
        return None


def exchange(response):
    """One request and its answer, for a FAIL line or a NOTE: enough to reproduce it."""
    req = response.request
    sent = req.body.decode(errors="replace") if isinstance(req.body, bytes) else (req.body or "")
    if len(sent) > 300:
        sent = sent[:300] + f"… ({len(sent)} bytes)"
    text = response.text if len(response.text) <= 600 else response.text[:600] + "…"
    return f"{req.method} {req.url} [{sent}] -> {response.status_code} {text}"


class Abort(Exception):
    """A check that later steps depend on failed: the scenario stops there."""


class Checks:
    def __init__(self, peer):
        self.peer = peer
        self.passed = 0
        self.failures = []

    def check(self, name, ok, detail=None):
        if ok:
            self.passed += 1
            print(f"PASS [{self.peer}] {name}", flush=True)
        else:
            self.failures.append(name)
            print(f"FAIL [{self.peer}] {name}", flush=True)
            if detail:
                print(f"       {detail}", flush=True)
        return bool(ok)

    def require(self, name, ok, detail=None):
        if not self.check(name, ok, detail):
            raise Abort(name)

    def note(self, text):
        print(f"NOTE [{self.peer}] {text}", flush=True)

    def run(self, scenario):
        """Runs the scenario, records the counts for run.sh's summary, and exits 1 on any failure."""
        started = time.monotonic()
        try:
            scenario(self)
        except Abort as e:
            self.note(f"stopped after the failed check `{e}`: later steps depend on it")
        except Exception:  # an unexpected error is a failure of the scenario, never a pass
            self.check("the scenario ran to its end", False, traceback.format_exc().rstrip().replace("\n", "\n       "))
        print(
            f"[{self.peer}] {self.passed} checks passed, {len(self.failures)} failed"
            f" ({time.monotonic() - started:.1f} s)",
            flush=True,
        )
        results = os.environ.get("INTEROP_WORK")
        if results:
            with open(os.path.join(results, "results", f"{self.peer}.json"), "w") as f:
                json.dump({"passed": self.passed, "failed": len(self.failures), "failures": self.failures}, f)
        sys.exit(1 if self.failures else 0)


class Tessera:
    """Tessera as its peers see it: only the endpoints of its discovery document."""

    def __init__(self):
        self.issuer = env("INTEROP_ISSUER")
        self.log_path = env("INTEROP_LOG")
        self.http = requests.Session()
        self.client = (env("CLIENT_ID"), env("CLIENT_SECRET"))
        self.rs = (env("RS_ID"), env("RS_SECRET"))
        self._discovery = None

    @property
    def discovery(self):
        if self._discovery is None:
            r = self.http.get(self.issuer + "/.well-known/uma2-configuration", timeout=TIMEOUT)
            r.raise_for_status()
            self._discovery = r.json()
        return self._discovery

    def endpoint(self, name):
        return self.discovery[name]

    def pat(self, checks):
        """The resource server's PAT: client_credentials, client_secret_basic, scope uma_protection."""
        r = self.http.post(
            self.endpoint("token_endpoint"),
            data={"grant_type": "client_credentials", "scope": "uma_protection"},
            auth=self.rs,
            timeout=TIMEOUT,
        )
        b = body(r) or {}
        checks.require(
            "the resource server gets a PAT (client_credentials, client_secret_basic, scope uma_protection)",
            r.status_code == 200 and b.get("token_type", "").lower() == "bearer" and b.get("access_token")
            and b.get("scope") == "uma_protection",
            exchange(r),
        )
        return b

    def register(self, pat, description):
        return self.http.post(
            self.endpoint("resource_registration_endpoint"),
            json=description,
            headers={"Authorization": f"Bearer {pat}"},
            timeout=TIMEOUT,
        )

    def permission(self, pat, permissions):
        return self.http.post(
            self.endpoint("permission_endpoint"),
            json=permissions,
            headers={"Authorization": f"Bearer {pat}"},
            timeout=TIMEOUT,
        )

    def ticket(self, checks, pat, resource_id, scopes, label):
        r = self.permission(pat, [{"resource_id": resource_id, "resource_scopes": scopes}])
        b = body(r) or {}
        checks.require(f"permission ticket for {label}: 201 {{ticket}}", r.status_code == 201 and b.get("ticket"),
                       exchange(r))
        return b["ticket"]

    def redeem(self, ticket, claim_token=None, claim_token_format=None, **extra):
        """The UMA grant (UMA 2.0 Grant §3.3.1), client_secret_basic."""
        form = {"grant_type": UMA_GRANT, "ticket": ticket, **extra}
        if claim_token is not None:
            form["claim_token"] = claim_token
            form["claim_token_format"] = claim_token_format
        return self.http.post(self.endpoint("token_endpoint"), data=form, auth=self.client, timeout=TIMEOUT)

    def introspect(self, pat, token):
        return self.http.post(
            self.endpoint("introspection_endpoint"),
            data={"token": token},
            headers={"Authorization": f"Bearer {pat}"},
            timeout=TIMEOUT,
        )

    def log_records(self, response, message=None):
        """Tessera's JSON log lines of the request that produced `response` (by its X-Request-Id)."""
        rid = response.headers.get("x-request-id")
        if not rid:
            return []
        deadline = time.monotonic() + 2  # the line may be written a moment after the answer
        while True:
            found = []
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if rid not in line:
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if message is None or rec.get("fields", {}).get("message") == message:
                        found.append(rec)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def refusal_reason(self, response):
        """Why Tessera's verifier refused the claim token of this request (its log, `reason`)."""
        recs = self.log_records(response, "claim token refused")
        return recs[-1]["fields"].get("reason") if recs else None


def is_refusal(response, error="need_info"):
    """A UMA grant refusal: 403 with `error`, and no token of any kind in the answer."""
    b = body(response) or {}
    return (
        response.status_code == 403
        and b.get("error") == error
        and not any(k in b for k in ("access_token", "refresh_token", "pct"))
    )


def is_rpt(response):
    b = body(response) or {}
    return (
        response.status_code == 200
        and bool(b.get("access_token"))
        and b.get("token_type", "").lower() == "bearer"
        and response.headers.get("cache-control", "").find("no-store") >= 0
    )
