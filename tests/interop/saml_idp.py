"""The partner SAML 2.0 identity provider of the interop suite: pysaml2 (PyPI), signing through
Debian's xmlsec1.

    python saml_idp.py setup DIR TESSERA_ISSUER METADATA_OUT

makes the IdP's RSA key and self-signed certificate in DIR, the service provider metadata pysaml2
needs to address Tessera (entityID = Tessera's issuer, the one audience Tessera's SAML verifier accepts
by default; assertion consumer = Tessera's token endpoint, where assertions are pushed, so that it is
the bearer confirmation's Recipient), and writes the IdP's own metadata, made by pysaml2, to
METADATA_OUT: Tessera's verifier reads the signing certificate from it.

`assertion(...)` (used by peer_saml.py) has pysaml2 answer as an IdP does: a Response carrying one
signed Assertion, from which the Assertion is taken out intact.
"""

import datetime as dt
import os
import shutil
import sys
import warnings

# pysaml2 7.5.5 imports a cipher mode that cryptography has moved; harmless here, and noisy.
warnings.filterwarnings("ignore", message="CFB has been moved")

from cryptography import x509  # noqa: E402 (after the warning filter)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AUTHN_PASSWORD_PROTECTED, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server

ENTITY_ID = "https://partner-idp.test"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def _paths(folder):
    return {
        "key": os.path.join(folder, "idp-key.pem"),
        "cert": os.path.join(folder, "idp-cert.pem"),
        "sp": os.path.join(folder, "sp-metadata.xml"),
        "issuer": os.path.join(folder, "tessera-issuer"),
    }


def _config(folder, sha256):
    p = _paths(folder)
    idp = {
        "endpoints": {"single_sign_on_service": [(ENTITY_ID + "/sso", BINDING_HTTP_POST)]},
        "policy": {
            "default": {
                "lifetime": {"minutes": 5},
                "attribute_restrictions": None,
                "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
            }
        },
        "name_id_format": [NAMEID_FORMAT_PERSISTENT],
    }
    if sha256:
        # pysaml2 signs with RSA-SHA1 and SHA-1 digests unless told otherwise.
        idp["signing_algorithm"] = RSA_SHA256
        idp["digest_algorithm"] = SHA256
    conf = IdPConfig()
    conf.load(
        {
            "entityid": ENTITY_ID,
            "key_file": p["key"],
            "cert_file": p["cert"],
            "xmlsec_binary": shutil.which("xmlsec1"),
            "metadata": {"local": [p["sp"]]},
            "service": {"idp": idp},
        }
    )
    return conf


def setup(folder, tessera_issuer, metadata_out):
    p = _paths(folder)
    os.makedirs(folder, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner-idp.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with open(p["key"], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
    with open(p["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(p["issuer"], "w") as f:
        f.write(tessera_issuer)
    with open(p["sp"], "w") as f:
        f.write(
            '<?xml version="1.0"?>\n'
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'entityID="{tessera_issuer}">\n'
            '  <md:SPSSODescriptor WantAssertionsSigned="true" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
            '    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
            f'Location="{tessera_issuer}/token" index="0"/>\n'
            "  </md:SPSSODescriptor>\n"
            "</md:EntityDescriptor>\n"
        )
    metadata = create_metadata_string(None, config=_config(folder, sha256=True), valid=24)
    with open(metadata_out, "wb") as f:
        f.write(metadata if isinstance(metadata, bytes) else metadata.encode())
    print(f"pysaml2 IdP {ENTITY_ID}: key and certificate in {folder}, metadata in {metadata_out}")


def response(folder, subject, identity, sha256=True):
    """pysaml2's answer as an IdP: a Response (unsigned) carrying one signed Assertion about
    `subject`, unsolicited, for Tessera (Audience = its issuer, Recipient = its token endpoint)."""
    p = _paths(folder)
    with open(p["issuer"]) as f:
        tessera_issuer = f.read()
    server = Server(config=_config(folder, sha256))
    answer = server.create_authn_response(
        identity=identity,
        in_response_to=None,  # unsolicited: a pushed claim token answers no request
        destination=tessera_issuer + "/token",
        sp_entity_id=tessera_issuer,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=subject),
        authn={"class_ref": AUTHN_PASSWORD_PROTECTED, "authn_auth": ENTITY_ID},
        sign_response=False,
        sign_assertion=True,
    )
    return str(answer).encode()


def assertion(folder, subject, identity, sha256=True):
    """The signed Assertion of `response(...)`, taken out intact, as XML bytes."""
    root = etree.fromstring(response(folder, subject, identity, sha256))
    found = root.findall(f"{{{SAML_NS}}}Assertion")
    if len(found) != 1:
        raise RuntimeError(f"pysaml2 answered {len(found)} assertions")
    # lxml copies the namespace declarations the Assertion inherits from the Response; exclusive
    # canonicalization (what pysaml2 signs with) keeps the signature valid.
    return etree.tostring(found[0])


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "setup":
        sys.exit(__doc__)
    setup(*sys.argv[2:])
