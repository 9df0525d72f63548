"""Peer 3: a partner SAML 2.0 identity provider, pysaml2 (PyPI pysaml2 7.5.5, signing through Debian's
xmlsec1), entity https://partner-idp.test; Tessera trusts the signing certificate of the metadata
pysaml2 made for it (saml_idp.py).

pysaml2 issues, as an IdP does, a Response with a signed Assertion about carol, a partner employee
(groups = employees); the Assertion is taken out and pushed to Tessera's token endpoint as
claim_token = base64url(assertion XML), claim_token_format urn:oasis:names:tc:SAML:2.0:assertion,
for `view` on a contract (type https://schemas.example.com/contract) under the enterprise demo policy
(policies/enterprise/partners.cedar#partner-employees-view-contracts).

  * pysaml2's default signature (RSA-SHA1, SHA-1 digests) is refused;
  * configured for RSA-SHA256/SHA-256, the same IdP's assertion is accepted: an RPT;
  * the same assertion with one attribute value altered is refused (and does not spend the genuine
    assertion's ID), and the genuine one pushed a second time is refused (single use).

The enterprise policy also requires UTC business hours (Monday to Friday, 08:00 to 18:00). Outside
them, the suite first shows that the repository's policy refuses the genuine assertion
(request_denied), then removes only that time clause from its own copy of the policies (never the
repository's), waits for Tessera's hot reload, and goes on; it says so in its output.
"""

import datetime as dt
import json
import re
import subprocess
import time

from common import SAML_FORMAT, Checks, Tessera, b64url, body, env, exchange, is_refusal, is_rpt
from saml_idp import assertion, response

CONTRACT = "https://schemas.example.com/contract"
POLICY = "enterprise/partners.cedar#partner-employees-view-contracts"
TIME_CLAUSE = re.compile(
    r"\s*&&\s*context\.weekday_utc <= 5 && context\.hour_utc >= 8 && context\.hour_utc < 18(?=\s*\n\s*\};)"
)
CAROL = {"groups": ["employees"], "mail": ["carol@partner.test"]}


def business_hours(ts):
    t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return t.isoweekday() <= 5 and 8 <= t.hour < 18


def utc(ts):
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%A %Y-%m-%d %H:%M UTC")


def relax_time_clause(c, t):
    """Removes the business-hours clause from the suite's copy of the enterprise policy and waits
    until Tessera has reloaded it."""
    path = env("POLICIES_DIR") + "/enterprise/partners.cedar"
    with open(path) as f:
        text = f.read()
    relaxed, n = TIME_CLAUSE.subn("", text)
    c.require("the enterprise policy's business-hours clause is found once in the suite's copy", n == 1,
              "policies/enterprise/partners.cedar changed: update TIME_CLAUSE in tests/interop/peer_saml.py")
    before = reloads(t)
    with open(path, "w") as f:
        f.write(relaxed)
    deadline = time.monotonic() + 15
    while reloads(t) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    c.require("Tessera hot-reloads the relaxed copy (log: policies reloaded)", reloads(t) > before,
              f"no `policies reloaded` in {t.log_path} within 15 s")


def reloads(t):
    with open(t.log_path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if '"policies reloaded"' in line)


def push(t, c, pat, rid, xml):
    return t.redeem(t.ticket(c, pat, rid, ["view"], "view on the contract"), b64url(xml), SAML_FORMAT)


def last_audit(t):
    out = subprocess.run(
        [env("INTEROP_TESSERA_BIN"), "--config", env("INTEROP_CONFIG"), "audit", "tail", "--limit", "1"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[-1] if lines else {}


def scenario(c):
    t = Tessera()
    saml = env("SAML_DIR")
    c.check("Tessera's discovery lists the SAML assertion format among claim_token_formats_supported",
            SAML_FORMAT in t.discovery.get("claim_token_formats_supported", []), t.discovery)

    pat = t.pat(c)["access_token"]
    r = t.register(pat, {"name": "Supply contract 2026", "type": CONTRACT, "resource_scopes": ["view", "download"]})
    rid = (body(r) or {}).get("_id")
    c.require("the resource server registers a contract: 201 {_id}", r.status_code == 201 and rid, exchange(r))

    # 1. pysaml2 as it comes: RSA-SHA1 signature, SHA-1 digests. Refused by default.
    sha1 = assertion(saml, "carol", CAROL, sha256=False)
    c.check("pysaml2's default assertion is signed with RSA-SHA1 and a SHA-1 digest",
            b"xmldsig#rsa-sha1" in sha1 and b"xmldsig#sha1" in sha1, sha1[:400])
    r = push(t, c, pat, rid, sha1)
    c.check("the SHA-1-signed assertion pushed as claim_token: 403 need_info, no RPT", is_refusal(r), exchange(r))
    reason = t.refusal_reason(r)
    c.check("Tessera's log says why: AlgorithmNotAllowed", reason == "AlgorithmNotAllowed", f"reason {reason!r}")

    # 2. Configured for SHA-256.
    genuine = assertion(saml, "carol", CAROL, sha256=True)
    c.check("configured for SHA-256, pysaml2 signs with RSA-SHA256 and a SHA-256 digest",
            b"xmldsig-more#rsa-sha256" in genuine and b"xmlenc#sha256" in genuine and b"sha1" not in genuine,
            genuine[:400])

    # pysaml2's whole Response (with the signed assertion inside) is not a claim token.
    r = push(t, c, pat, rid, response(saml, "carol", CAROL, sha256=True))
    c.check("pysaml2's whole Response (its Assertion signed) pushed as claim_token: 403 need_info, no RPT",
            is_refusal(r), exchange(r))
    reason = t.refusal_reason(r)
    c.check("Tessera's log says why: NotAnAssertion", reason == "NotAnAssertion", f"reason {reason!r}")

    # 3. One attribute value altered (one that the policy does not read, so that only the signature
    #    can refuse it), pushed before the genuine one: refused, and the ID is not spent.
    altered = genuine.replace(b"carol@partner.test", b"mallory@partner.test")
    c.require("the altered copy differs from the genuine assertion in that one value only",
              altered != genuine and altered.count(b"mallory@partner.test") == 1)
    r = push(t, c, pat, rid, altered)
    c.check("the assertion with one attribute altered: 403 need_info, no RPT", is_refusal(r), exchange(r))
    reason = t.refusal_reason(r)
    c.check("Tessera's log says why: BadSignature", reason == "BadSignature", f"reason {reason!r}")

    # 4. The genuine assertion, under the enterprise policy as shipped or with the time clause removed.
    now = time.time()
    if business_hours(now) and business_hours(now + 120):
        c.note(f"{utc(now)}, inside UTC business hours: the repository's enterprise policy is used unchanged")
    else:
        if not business_hours(now) and not business_hours(now + 120):
            r = push(t, c, pat, rid, genuine)
            c.check("outside UTC business hours, the repository's policy refuses the genuine assertion: "
                    "403 request_denied, no RPT", is_refusal(r, "request_denied"), exchange(r))
            r = push(t, c, pat, rid, genuine)
            c.check("that assertion was spent by its verification: pushed again, 403 need_info", is_refusal(r),
                    exchange(r))
            reason = t.refusal_reason(r)
            c.check("Tessera's log says why: Replayed", reason == "Replayed", f"reason {reason!r}")
            genuine = assertion(saml, "carol", CAROL, sha256=True)
        c.note(f"{utc(now)}, OUTSIDE (or within 2 minutes of the end of) UTC business hours, Mon-Fri 08:00-18:00: "
               "the suite removes ONLY the time clause from its temporary copy of policies/enterprise/partners.cedar "
               "for the rest of this peer")
        relax_time_clause(c, t)

    r = push(t, c, pat, rid, genuine)
    c.require("the SHA-256-signed assertion of a partner employee: 200 RPT", is_rpt(r), exchange(r))
    rpt = r.json()["access_token"]
    r = t.introspect(pat, rpt)
    b = body(r) or {}
    c.check("introspection by the resource server: active, view on the contract",
            r.status_code == 200 and b.get("active") is True
            and b.get("permissions") == [{"resource_id": rid, "resource_scopes": ["view"]}], exchange(r))
    audit = last_audit(t)
    c.check(f"the audit trail names {POLICY}, the party https://partner-idp.test|carol and the claim source "
            "pushed:partner-idp-saml",
            audit.get("outcome") == "rpt" and audit.get("policies") == [POLICY]
            and audit.get("party_iss") == "https://partner-idp.test" and audit.get("party_sub") == "carol"
            and audit.get("claim_sources") == ["pushed:partner-idp-saml"], audit)

    # 5. Single use: the genuine assertion again.
    r = push(t, c, pat, rid, genuine)
    c.check("the same assertion pushed again: 403 need_info, no RPT", is_refusal(r), exchange(r))
    reason = t.refusal_reason(r)
    c.check("Tessera's log says why: Replayed", reason == "Replayed", f"reason {reason!r}")

    # 6. A valid assertion for someone who is not an employee.
    r = push(t, c, pat, rid, assertion(saml, "dave", {"groups": ["contractors"], "mail": ["dave@partner.test"]}))
    c.check("a genuine assertion for a contractor (groups = contractors): 403 request_denied, no RPT",
            is_refusal(r, "request_denied"), exchange(r))


if __name__ == "__main__":
    Checks("saml").run(scenario)
