#!/usr/bin/env bash
# Regenerates the SAML fixtures of the claim-verifier tests (src/verifiers/saml.rs). Every signature is
# made by Debian's `xmlsec1` (apt-get install xmlsec1); the attack fixtures are built from really signed
# assertions by moving or editing text afterwards, exactly as an attacker would. Run from anywhere:
#   bash tests/verifier_fixtures/saml/make_fixtures.sh
# Keys are generated on the first run and kept, so re-running re-signs with the same certificates.
# Times are fixed (issued 2026-01-01T00:00:00Z = 1767225600); the tests pass `now` explicitly.
set -euo pipefail
cd "$(dirname "$0")"
command -v xmlsec1 >/dev/null || { echo "xmlsec1 is required (apt-get install xmlsec1)" >&2; exit 1; }

[ -f idp-key.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout idp-key.pem -out idp-cert.pem \
  -days 3650 -subj '/CN=partner-idp.test' 2>/dev/null
[ -f other-key.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout other-key.pem -out other-cert.pem \
  -days 3650 -subj '/CN=impostor.test' 2>/dev/null
cert_b64() { grep -v -- '-----' "$1" | tr -d '\n'; }

IDP=https://partner-idp.test
SP=https://tessera.test
TOKEN=https://tessera.test/token
SAML=urn:oasis:names:tc:SAML:2.0:assertion
ID_ATTR="--id-attr:ID $SAML:Assertion"

# sig_template ID SIGALG DIGALG: an enveloped-signature template for the element with that ID.
sig_template() {
  cat <<XML
<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="$2"/><ds:Reference URI="#$1"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="$3"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>
XML
}

RSA256=http://www.w3.org/2001/04/xmldsig-more#rsa-sha256
SHA256=http://www.w3.org/2001/04/xmlenc#sha256
RSA1=http://www.w3.org/2000/09/xmldsig#rsa-sha1
SHA1=http://www.w3.org/2000/09/xmldsig#sha1
HMAC256=http://www.w3.org/2001/04/xmldsig-more#hmac-sha256

# assertion ID ISSUER AUDIENCE NAMEID ISSUED NOTBEFORE NOTONORAFTER ROLE SIGNATURE_XML
assertion() {
  cat <<XML
<saml:Assertion xmlns:saml="$SAML" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="$1" Version="2.0" IssueInstant="$5"><saml:Issuer>$2</saml:Issuer>$9<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">$4</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="$7" Recipient="$TOKEN"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="$6" NotOnOrAfter="$7"><saml:AudienceRestriction><saml:Audience>$3</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="$5" SessionIndex="$1"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement><saml:Attribute Name="urn:oid:2.16.840.1.113883.4.6" FriendlyName="npi" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue xsi:type="xs:string">1234567893</saml:AttributeValue></saml:Attribute><saml:Attribute Name="role" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">$8</saml:AttributeValue></saml:Attribute><saml:Attribute Name="urn:mace:dir:attribute-def:mail" FriendlyName="mail" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue xsi:type="xs:string">alice@hospital.example</saml:AttributeValue></saml:Attribute><saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">cardiology</saml:AttributeValue><saml:AttributeValue xsi:type="xs:string">staff</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>
XML
}

T0=2026-01-01T00:00:00Z; TB=2025-12-31T23:59:30Z; TE=2026-01-01T00:05:00Z

# sign TEMPLATE OUT KEY CERT [ID_ATTR...]
sign() {
  local tmpl=$1 out=$2 key=$3 cert=$4; shift 4
  xmlsec1 --sign --privkey-pem "$key,$cert" "$@" --output "$out" "$tmpl" 2>/dev/null
}
verify_ok() { xmlsec1 --verify --pubkey-cert-pem idp-cert.pem "$@" >/dev/null 2>&1; }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 1. the genuine assertion
assertion _a1 "$IDP" "$SP" alice "$T0" "$TB" "$TE" physician "$(sig_template _a1 $RSA256 $SHA256)" > "$tmp/valid.xml"
sign "$tmp/valid.xml" valid.xml idp-key.pem idp-cert.pem $ID_ATTR
# 2. SHA-1 signature and digest
assertion _a2 "$IDP" "$SP" alice "$T0" "$TB" "$TE" physician "$(sig_template _a2 $RSA1 $SHA1)" > "$tmp/sha1.xml"
sign "$tmp/sha1.xml" sha1.xml idp-key.pem idp-cert.pem $ID_ATTR
# 3. another audience
assertion _a3 "$IDP" https://elsewhere.test alice "$T0" "$TB" "$TE" physician "$(sig_template _a3 $RSA256 $SHA256)" > "$tmp/aud.xml"
sign "$tmp/aud.xml" wrong_audience.xml idp-key.pem idp-cert.pem $ID_ATTR
# 4. another issuer, signed with the trusted key
assertion _a4 https://other-idp.test "$SP" alice "$T0" "$TB" "$TE" physician "$(sig_template _a4 $RSA256 $SHA256)" > "$tmp/iss.xml"
sign "$tmp/iss.xml" wrong_issuer.xml idp-key.pem idp-cert.pem $ID_ATTR
# 5. expired a day before the others are issued
assertion _a5 "$IDP" "$SP" alice 2025-12-31T00:00:00Z 2025-12-30T23:59:30Z 2025-12-31T00:05:00Z physician \
  "$(sig_template _a5 $RSA256 $SHA256)" > "$tmp/exp.xml"
sign "$tmp/exp.xml" expired.xml idp-key.pem idp-cert.pem $ID_ATTR
# 6. valid only from a day later
assertion _a6 "$IDP" "$SP" alice 2026-01-02T00:00:00Z 2026-01-02T00:00:00Z 2026-01-02T00:05:00Z physician \
  "$(sig_template _a6 $RSA256 $SHA256)" > "$tmp/nbf.xml"
sign "$tmp/nbf.xml" not_yet_valid.xml idp-key.pem idp-cert.pem $ID_ATTR
# 7. signed by a key the verifier does not know (its own certificate in KeyInfo)
assertion _a7 "$IDP" "$SP" alice "$T0" "$TB" "$TE" physician "$(sig_template _a7 $RSA256 $SHA256)" > "$tmp/other.xml"
sign "$tmp/other.xml" unknown_key.xml other-key.pem other-cert.pem $ID_ATTR
# 8. the genuine assertion with one attribute value changed after signing
sed 's/>physician</>surgeon</' valid.xml > bad_signature.xml
# 9. HMAC-SHA256 keyed with the IdP's public certificate (key confusion)
assertion _a9 "$IDP" "$SP" alice "$T0" "$TB" "$TE" admin "$(sig_template _a9 $HMAC256 $SHA256 | sed 's#<ds:KeyInfo>.*</ds:KeyInfo>##')" > "$tmp/hmac.xml"
xmlsec1 --sign --hmackey idp-cert.pem $ID_ATTR --output hmac.xml "$tmp/hmac.xml" 2>/dev/null
# 10. no signature at all
assertion _a10 "$IDP" "$SP" alice "$T0" "$TB" "$TE" admin "" > unsigned.xml
# 11. signed-response decoy: the IdP signed a Response whose assertion is not signed itself
{
  printf '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="%s" ID="_r1" Version="2.0" IssueInstant="%s" Destination="%s"><saml:Issuer>%s</saml:Issuer>' "$SAML" "$T0" "$TOKEN" "$IDP"
  sig_template _r1 $RSA256 $SHA256 | tr -d '\n'
  printf '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
  assertion _a11 "$IDP" "$SP" alice "$T0" "$TB" "$TE" admin "" | tr -d '\n'
  printf '</samlp:Response>\n'
} > "$tmp/resp.xml"
sign "$tmp/resp.xml" signed_response_decoy.xml idp-key.pem idp-cert.pem --id-attr:ID urn:oasis:names:tc:SAML:2.0:protocol:Response
# 12. comment injection: the IdP signed NameID alice@hospital.example.evil.test; a comment inserted
#     afterwards leaves the signature valid (exclusive c14n drops comments)
assertion _a12 "$IDP" "$SP" alice@hospital.example.evil.test "$T0" "$TB" "$TE" physician "$(sig_template _a12 $RSA256 $SHA256)" > "$tmp/cmt.xml"
sign "$tmp/cmt.xml" "$tmp/cmt-signed.xml" idp-key.pem idp-cert.pem $ID_ATTR
sed 's/alice@hospital.example.evil.test/alice@hospital.example<!---->.evil.test/' "$tmp/cmt-signed.xml" > comment_injection.xml
# 13. wrapping (XSW): an attacker's assertion (mallory, admin) carrying the genuine signed one in <Advice>
python3 - <<'PY'
import re
signed = open("valid.xml").read()
signed = re.sub(r"^<\?xml[^>]*\?>\s*", "", signed).strip()
evil = signed.replace('ID="_a1"', 'ID="_evil"', 1).replace(">alice<", ">mallory<", 1).replace(">physician<", ">admin<", 1)
evil = re.sub(r"<ds:Signature.*?</ds:Signature>", "", evil, count=1, flags=re.S)
evil = evil.replace("<saml:AuthnStatement", "<saml:Advice>" + signed + "</saml:Advice><saml:AuthnStatement", 1)
open("wrapping_advice.xml", "w").write(evil + "\n")
# XSW variant: the genuine signature moved onto the attacker's root; the genuine assertion, minus that
# signature (exactly what the enveloped transform digests), sits in the attacker's <Advice>
sig = re.search(r"<ds:Signature.*?</ds:Signature>", signed, re.S).group(0)
inner = re.sub(r"<ds:Signature.*?</ds:Signature>", "", signed, count=1, flags=re.S)
evil2 = inner.replace('ID="_a1"', 'ID="_evil2"', 1).replace(">alice<", ">mallory<", 1).replace(">physician<", ">admin<", 1)
evil2 = evil2.replace("</saml:Issuer>", "</saml:Issuer>" + sig, 1)
evil2 = evil2.replace("<saml:AuthnStatement", "<saml:Advice>" + inner + "</saml:Advice><saml:AuthnStatement", 1)
open("wrapping_moved_signature.xml", "w").write(evil2 + "\n")
PY
# 14. IdP metadata with the signing certificate, and one without any certificate
cat > metadata.xml <<XML
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="$IDP"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>$(cert_b64 idp-cert.pem)</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="$IDP/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>
XML
cat > metadata_no_cert.xml <<XML
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="$IDP"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="$IDP/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>
XML

# Self-checks: what xmlsec1 itself says about each fixture.
verify_ok $ID_ATTR valid.xml
verify_ok $ID_ATTR sha1.xml
verify_ok $ID_ATTR comment_injection.xml            # the comment does not break the signature: a real attack
verify_ok --id-attr:ID urn:oasis:names:tc:SAML:2.0:protocol:Response signed_response_decoy.xml
verify_ok $ID_ATTR wrapping_advice.xml              # the genuine signature still verifies inside the wrapper
verify_ok $ID_ATTR wrapping_moved_signature.xml              # and so does the one moved onto the attacker's root
! verify_ok $ID_ATTR bad_signature.xml
! verify_ok $ID_ATTR unknown_key.xml
echo "SAML fixtures written to $(pwd)"
