//! SAML 2.0 assertions pushed as claim tokens (`urn:oasis:names:tc:SAML:2.0:assertion`, the token is
//! base64url of the assertion XML), verified with `samael` over libxmlsec1.
//!
//! The order of defences, each with its own refusal reason:
//! 1. A strict pre-scan (quick-xml) of the raw XML: no DTD (XXE), no comment or processing
//!    instruction (comment injection: exclusive c14n ignores comments, so a comment inserted into a
//!    signed NameID keeps the signature valid while naive readers see a shorter value), depth ≤ 64,
//!    the root is a SAML `Assertion` (a `Response` is refused: only a signed assertion is read).
//! 2. No configured certificate: refuse (never "skip the check"). No signature: refuse.
//! 3. Every `SignatureMethod` / `DigestMethod` in the allowlist (HMAC never; SHA-1 only with
//!    `danger_allow_sha1`), also enforced inside samael with its explicit allowlist.
//! 4. samael `reduce_xml_to_signed_with_allowed_algorithms` in `ValidateAndMarkNoAncestors` mode: the
//!    output holds only content covered by a verified signature, and only that output is read.
//! 5. Signature wrapping: the reduced assertion must be the document's root assertion, identical to
//!    it once the signature element is set aside. Anything unsigned in the token is a refusal.
//! 6. Issuer, `Conditions` (`NotBefore`, `NotOnOrAfter`, every `AudienceRestriction` naming an
//!    accepted audience), `IssueInstant` age, a bearer `SubjectConfirmation` whose `Recipient` (if
//!    any) is the token endpoint and that answers no request (`InResponseTo` absent: pushed
//!    assertions are unsolicited, threats D2). Times use the request's `now` with the configured skew.

use std::collections::BTreeMap;

use base64::Engine;
use quick_xml::events::Event;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode};
use samael::schema::Assertion;
use serde_json::Value;

use super::config::{KeySource, LoadError, VerifierConfig};
use super::{ClaimVerifier, Reason, TokenFacts, VerifyError, VerifyFuture, b64url_decode};
use crate::clock::UnixTime;

const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const MAX_DEPTH: usize = 64;
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// (config name, samael allowlist entry, SignatureMethod URI, DigestMethod URI)
const ALGORITHMS: [(&str, AllowedSignatureAlgorithm); 6] = [
    ("RSA-SHA256", AllowedSignatureAlgorithm::RsaSha256),
    ("RSA-SHA384", AllowedSignatureAlgorithm::RsaSha384),
    ("RSA-SHA512", AllowedSignatureAlgorithm::RsaSha512),
    ("ECDSA-SHA256", AllowedSignatureAlgorithm::EcdsaSha256),
    ("ECDSA-SHA384", AllowedSignatureAlgorithm::EcdsaSha384),
    ("ECDSA-SHA512", AllowedSignatureAlgorithm::EcdsaSha512),
];
const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// What the pre-scan learns from the raw XML, before any signature is checked.
#[derive(Debug, Default)]
pub(crate) struct Prescan {
    pub root_id: Option<String>,
    pub issuer: Option<String>,
    /// `Signature` elements that are direct children of the root assertion.
    pub root_signatures: usize,
    pub signature_methods: Vec<String>,
    pub digest_methods: Vec<String>,
    /// DER of every `X509Certificate` in the document (from `KeyInfo`).
    pub key_info_certs: Vec<Vec<u8>>,
}

fn malformed(d: impl Into<String>) -> VerifyError {
    VerifyError::new(Reason::MalformedXml, d)
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

/// The strict pre-scan (step 1). Also the fuzzed entry point for raw XML.
pub(crate) fn prescan(xml: &str) -> Result<Prescan, VerifyError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut st = ScanState::default();
    loop {
        let ev = reader.read_event().map_err(|e| malformed(format!("not well-formed XML: {e}")))?;
        match ev {
            Event::DocType(_) => return Err(VerifyError::new(Reason::XmlComment, "a DTD is not allowed")),
            Event::Comment(_) => return Err(VerifyError::new(Reason::XmlComment, "XML comments are not allowed")),
            Event::PI(_) => {
                return Err(VerifyError::new(Reason::XmlComment, "processing instructions are not allowed"));
            }
            Event::Decl(_) if !st.seen_root => {}
            Event::Decl(_) => return Err(malformed("misplaced XML declaration")),
            Event::Start(e) => st.open(&e, false)?,
            Event::Empty(e) => st.open(&e, true)?,
            Event::End(_) => {
                st.finish_text()?;
                st.stack.pop();
            }
            Event::Text(t) => {
                if st.target.is_some() {
                    st.text.push_str(&t.decode().map_err(|e| malformed(e.to_string()))?);
                }
            }
            Event::GeneralRef(r) => {
                if st.target.is_some() {
                    let name = r.decode().map_err(|e| malformed(e.to_string()))?;
                    let c = match r.resolve_char_ref().map_err(|e| malformed(e.to_string()))? {
                        Some(c) => c,
                        None => predefined_entity(&name).ok_or_else(|| malformed("unknown entity reference"))?,
                    };
                    st.text.push(c);
                }
            }
            Event::CData(c) => {
                if st.target.is_some() {
                    st.text.push_str(&c.decode().map_err(|e| malformed(e.to_string()))?);
                }
            }
            Event::Eof => break,
        }
    }
    if !st.seen_root || !st.stack.is_empty() {
        return Err(malformed("no complete root element"));
    }
    Ok(st.out)
}

#[derive(Default)]
struct ScanState {
    out: Prescan,
    stack: Vec<String>,
    seen_root: bool,
    target: Option<&'static str>,
    text: String,
}

impl ScanState {
    fn open(&mut self, e: &quick_xml::events::BytesStart<'_>, empty: bool) -> Result<(), VerifyError> {
        let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let depth = self.stack.len();
        if depth == 0 {
            if self.seen_root {
                return Err(malformed("more than one root element"));
            }
            self.seen_root = true;
            if local != "Assertion" {
                return Err(VerifyError::new(
                    Reason::NotAnAssertion,
                    format!("the root element is `{local}`, not an Assertion"),
                ));
            }
            let ns_ok = e.attributes().flatten().any(|a| {
                let key = a.key.as_ref();
                (key == b"xmlns" || key.starts_with(b"xmlns:"))
                    && a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map(|v| v == SAML_NS).unwrap_or(false)
            });
            if !ns_ok {
                return Err(VerifyError::new(Reason::NotAnAssertion, "the root is not in the SAML namespace"));
            }
            self.out.root_id = attr(e, b"ID")?;
        }
        if depth + 1 > MAX_DEPTH {
            return Err(malformed(format!("nesting deeper than {MAX_DEPTH}")));
        }
        self.finish_text()?;
        match local.as_str() {
            "Issuer" if depth == 1 => self.target = Some("issuer"),
            "X509Certificate" => self.target = Some("cert"),
            "Signature" if depth == 1 => self.out.root_signatures += 1,
            "SignatureMethod" => self.out.signature_methods.push(attr(e, b"Algorithm")?.unwrap_or_default()),
            "DigestMethod" => self.out.digest_methods.push(attr(e, b"Algorithm")?.unwrap_or_default()),
            _ => {}
        }
        if empty {
            self.finish_text()
        } else {
            self.stack.push(local);
            Ok(())
        }
    }

    fn finish_text(&mut self) -> Result<(), VerifyError> {
        finish_text(&mut self.out, &mut self.target, &mut self.text)
    }
}

fn finish_text(out: &mut Prescan, target: &mut Option<&'static str>, text: &mut String) -> Result<(), VerifyError> {
    match target.take() {
        Some("issuer") => out.issuer = Some(text.trim().to_owned()),
        Some("cert") => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| VerifyError::new(Reason::MalformedBase64, "an X509Certificate is not base64"))?;
            out.key_info_certs.push(der);
        }
        _ => {}
    }
    text.clear();
    Ok(())
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &[u8]) -> Result<Option<String>, VerifyError> {
    match e.try_get_attribute(name).map_err(|err| malformed(err.to_string()))? {
        Some(a) => Ok(Some(
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| malformed(err.to_string()))?
                .into_owned(),
        )),
        None => Ok(None),
    }
}

/// base64url (padding tolerated) → UTF-8 XML.
pub(crate) fn decode_token(raw: &str) -> Result<String, VerifyError> {
    let bytes = b64url_decode(raw.trim())
        .ok_or_else(|| VerifyError::new(Reason::MalformedBase64, "the token is not base64url"))?;
    String::from_utf8(bytes).map_err(|_| malformed("the assertion is not UTF-8"))
}

/// Signing certificates (DER) of `issuer`'s IdP role in its metadata. An entity other than the
/// configured issuer is a configuration error; no certificate is allowed (the verifier then refuses
/// every token) but is warned about at load.
pub(crate) fn metadata_certificates(xml: &str, issuer: &str) -> Result<Vec<Vec<u8>>, String> {
    let md: samael::metadata::EntityDescriptor =
        xml.parse().map_err(|e| format!("`keys.metadata_file` is not SAML metadata: {e}"))?;
    if md.entity_id.as_deref() != Some(issuer) {
        return Err(format!(
            "`keys.metadata_file` describes entity `{}`, not the issuer `{issuer}`",
            md.entity_id.unwrap_or_default()
        ));
    }
    let mut out = Vec::new();
    for idp in md.idp_sso_descriptors.unwrap_or_default() {
        for kd in idp.key_descriptors {
            if kd.key_use.as_deref().is_some_and(|u| u != "signing") {
                continue;
            }
            for c in kd.key_info.x509_data.map(|d| d.certificates).unwrap_or_default() {
                let compact: String = c.chars().filter(|ch| !ch.is_whitespace()).collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| "`keys.metadata_file` holds a certificate that is not base64".to_owned())?;
                out.push(der);
            }
        }
    }
    Ok(out)
}

/// Every `CERTIFICATE` block of a PEM file, as DER.
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "`keys.certificate_file` is not PEM".to_owned())?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after = rest.get(start + 27..).unwrap_or_default();
        let end = after.find("-----END CERTIFICATE-----").ok_or("`keys.certificate_file`: unterminated PEM block")?;
        let body: String = after.get(..end).unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "`keys.certificate_file` holds a block that is not base64".to_owned())?;
        out.push(der);
        rest = after.get(end..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err("`keys.certificate_file` holds no CERTIFICATE block".into());
    }
    Ok(out)
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> UnixTime {
    t.timestamp()
}

pub(crate) struct SamlVerifier {
    cfg: VerifierConfig,
    certs: Vec<CertificateDer>,
    /// `None` only with `danger_allow_sha1` (samael's allowlist has no SHA-1 entry); the pre-scan
    /// allowlist is enforced in every case.
    samael_allowlist: Option<Vec<AllowedSignatureAlgorithm>>,
    signature_uris: Vec<&'static str>,
    digest_uris: Vec<&'static str>,
}

impl SamlVerifier {
    pub fn new(cfg: VerifierConfig) -> Result<Self, LoadError> {
        let certs: Vec<CertificateDer> = match &cfg.keys {
            KeySource::Certificates(c) => c.iter().cloned().map(CertificateDer::from).collect(),
            _ => Vec::new(),
        };
        if certs.is_empty() {
            tracing::warn!(
                verifier = %cfg.id,
                file = %cfg.file.display(),
                "SAML verifier has no signing certificate: it will refuse every assertion"
            );
        }
        let chosen: Vec<AllowedSignatureAlgorithm> =
            ALGORITHMS.iter().filter(|(name, _)| cfg.algorithms.iter().any(|a| a == name)).map(|(_, a)| *a).collect();
        let mut signature_uris: Vec<&'static str> = chosen.iter().map(|a| a.signature_uri()).collect();
        let mut digest_uris: Vec<&'static str> = chosen.iter().map(|a| a.digest_uri()).collect();
        let samael_allowlist = if cfg.danger_allow_sha1 {
            signature_uris.push(RSA_SHA1);
            digest_uris.push(SHA1);
            None
        } else {
            Some(chosen)
        };
        Ok(SamlVerifier { cfg, certs, samael_allowlist, signature_uris, digest_uris })
    }

    async fn check_inner(&self, raw: &str, now: UnixTime) -> Result<TokenFacts, VerifyError> {
        let xml = decode_token(raw)?;
        let scan = prescan(&xml)?;
        let issuer = scan.issuer.clone().unwrap_or_default();
        if issuer != self.cfg.issuer {
            return Err(VerifyError::new(Reason::WrongIssuer, format!("Issuer is `{issuer}`")));
        }
        if self.certs.is_empty() {
            return Err(VerifyError::new(Reason::KeysUnavailable, "no signing certificate configured"));
        }
        if scan.root_signatures == 0 && !scan.signature_methods.is_empty() {
            // A signature somewhere below, none on the root: the classic wrapping shape.
            return Err(VerifyError::new(Reason::SignatureWrapping, "a nested signature, none on the root assertion"));
        }
        if scan.root_signatures == 0 {
            return Err(VerifyError::new(Reason::Unsigned, "the assertion itself is not signed"));
        }
        for m in &scan.signature_methods {
            if m.to_ascii_lowercase().contains("hmac") {
                return Err(VerifyError::new(Reason::HmacRefused, format!("signature method `{m}`")));
            }
            if !self.signature_uris.contains(&m.as_str()) {
                return Err(VerifyError::new(Reason::AlgorithmNotAllowed, format!("signature method `{m}`")));
            }
        }
        for d in &scan.digest_methods {
            if !self.digest_uris.contains(&d.as_str()) {
                return Err(VerifyError::new(Reason::AlgorithmNotAllowed, format!("digest method `{d}`")));
            }
        }
        if !scan.key_info_certs.is_empty()
            && !scan.key_info_certs.iter().any(|c| self.certs.iter().any(|k| k.der_data() == c.as_slice()))
        {
            return Err(VerifyError::new(Reason::UnknownKey, "signed with a certificate the verifier does not trust"));
        }

        // libxml2/xmlsec work is CPU-bound and synchronous: off the async workers.
        let (xml_owned, certs, allow) = (xml.clone(), self.certs.clone(), self.samael_allowlist.clone());
        let reduced = tokio::task::spawn_blocking(move || {
            samael::crypto::Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                &xml_owned,
                &certs,
                ReduceMode::ValidateAndMarkNoAncestors,
                allow.as_deref(),
            )
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| VerifyError::new(Reason::BadSignature, format!("verification task failed: {e}")))?
        .map_err(|e| VerifyError::new(Reason::BadSignature, format!("signature does not verify: {e}")))?;

        let signed: Assertion =
            reduced.parse().map_err(|e| VerifyError::new(Reason::SignatureWrapping, format!("signed part: {e}")))?;
        let whole: Assertion = xml.parse().map_err(|e| malformed(format!("not a SAML assertion: {e}")))?;
        let mut whole_unsigned = whole.clone();
        whole_unsigned.signature = None;
        let mut signed_unsigned = signed.clone();
        signed_unsigned.signature = None;
        if Some(&signed.id) != scan.root_id.as_ref() || signed_unsigned != whole_unsigned {
            return Err(VerifyError::new(
                Reason::SignatureWrapping,
                "the signed content is not the whole root assertion",
            ));
        }
        self.check_assertion(&signed, now)
    }

    fn check_assertion(&self, a: &Assertion, now: UnixTime) -> Result<TokenFacts, VerifyError> {
        let skew = self.cfg.clock_skew_secs;
        if a.version != "2.0" {
            return Err(malformed(format!("assertion version `{}`", a.version)));
        }
        if a.issuer.value.as_deref() != Some(self.cfg.issuer.as_str()) {
            return Err(VerifyError::new(Reason::WrongIssuer, "signed Issuer differs"));
        }
        let issued = ts(&a.issue_instant);
        if issued > now.saturating_add(skew) {
            return Err(VerifyError::new(Reason::NotYetValid, format!("issued in the future ({issued}), now {now}")));
        }
        let cond = a.conditions.as_ref().ok_or_else(|| VerifyError::new(Reason::MissingClaim, "no Conditions"))?;
        if let Some(nb) = &cond.not_before
            && ts(nb) > now.saturating_add(skew)
        {
            return Err(VerifyError::new(Reason::NotYetValid, format!("NotBefore {}, now {now}", ts(nb))));
        }
        let mut expires_at = cond
            .not_on_or_after
            .as_ref()
            .map(ts)
            .ok_or_else(|| VerifyError::new(Reason::MissingClaim, "Conditions has no NotOnOrAfter"))?;
        if expires_at.saturating_add(skew) <= now {
            return Err(VerifyError::new(Reason::Expired, format!("NotOnOrAfter {expires_at}, now {now}")));
        }
        if now.saturating_sub(issued) > self.cfg.max_age_secs.saturating_add(skew) {
            return Err(VerifyError::new(
                Reason::TooOld,
                format!("issued at {issued}, older than {} s at {now}", self.cfg.max_age_secs),
            ));
        }
        // SAML Core §2.5.1.4: the relying party must be named in every AudienceRestriction.
        let restrictions = cond.audience_restrictions.as_deref().unwrap_or_default();
        if restrictions.is_empty() {
            return Err(VerifyError::new(Reason::WrongAudience, "no AudienceRestriction"));
        }
        for r in restrictions {
            if !r.audience.iter().any(|x| self.cfg.audiences.contains(x)) {
                return Err(VerifyError::new(
                    Reason::WrongAudience,
                    format!("AudienceRestriction {:?} names no accepted audience", r.audience),
                ));
            }
        }
        let subject = a.subject.as_ref().ok_or_else(|| VerifyError::new(Reason::MissingClaim, "no Subject"))?;
        let name_id = subject
            .name_id
            .as_ref()
            .map(|n| n.value.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| VerifyError::new(Reason::MissingClaim, "no NameID"))?;
        let confirmations = subject.subject_confirmations.as_deref().unwrap_or_default();
        let mut bearer = false;
        for c in confirmations.iter().filter(|c| c.method.as_deref() == Some(BEARER)) {
            bearer = true;
            if let Some(d) = &c.subject_confirmation_data {
                if d.in_response_to.is_some() {
                    return Err(VerifyError::new(Reason::NotAnAssertion, "answers a request (InResponseTo)"));
                }
                if let Some(r) = &d.recipient
                    && *r != self.cfg.recipient
                {
                    return Err(VerifyError::new(Reason::WrongAudience, format!("Recipient `{r}`")));
                }
                if let Some(t) = &d.not_on_or_after {
                    let t = ts(t);
                    if t.saturating_add(skew) <= now {
                        return Err(VerifyError::new(Reason::Expired, format!("confirmation NotOnOrAfter {t}")));
                    }
                    expires_at = expires_at.min(t);
                }
            }
        }
        if !bearer {
            return Err(VerifyError::new(Reason::NotAnAssertion, "no bearer SubjectConfirmation"));
        }
        let authn = a.authn_statements.as_deref().unwrap_or_default().first();
        let auth_time = authn.and_then(|s| s.authn_instant.as_ref()).map(ts);
        let auth_level =
            authn.and_then(|s| s.authn_context.as_ref()).and_then(|c| c.value.as_ref()).and_then(|r| r.value.clone());

        let mut claims: BTreeMap<String, Value> = BTreeMap::new();
        for statement in a.attribute_statements.as_deref().unwrap_or_default() {
            for attribute in &statement.attributes {
                let values: Vec<Value> =
                    attribute.values.iter().filter_map(|v| v.value.clone()).map(Value::String).collect();
                let value = match <[Value; 1]>::try_from(values) {
                    Ok([one]) => one,
                    Err(many) => Value::Array(many),
                };
                for key in [&attribute.name, &attribute.friendly_name].into_iter().flatten() {
                    if claims.insert(key.clone(), value.clone()).is_some() {
                        return Err(malformed(format!("attribute `{key}` appears twice")));
                    }
                }
            }
        }
        Ok(TokenFacts { subject: name_id, token_id: Some(a.id.clone()), expires_at, auth_time, auth_level, claims })
    }
}

impl ClaimVerifier for SamlVerifier {
    fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    fn peek_issuer(&self, raw: &str) -> Result<String, VerifyError> {
        let xml = decode_token(raw)?;
        prescan(&xml)?.issuer.ok_or_else(|| VerifyError::new(Reason::MissingClaim, "no Issuer"))
    }

    fn check<'a>(&'a self, raw: &'a str, now: UnixTime) -> VerifyFuture<'a> {
        Box::pin(self.check_inner(raw, now))
    }
}
