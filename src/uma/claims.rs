//! The requesting party of one redemption, from up to three sources (Grant §3.3.1): claims carried
//! on the ticket from earlier rounds of this request, a PCT, and a claim token pushed now. Only
//! verified claims ever get here. Claims merge only when they are about the same person (same issuer
//! and subject); server facts (time, client) are never claims, they go to the policy context.

use serde::{Deserialize, Serialize};

use crate::policy::{ClaimSource, RequestingParty};

/// Claims carried on a rotated ticket (stored as JSON in the ticket row).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub party: RequestingParty,
    /// Where the carried claims came from, e.g. `pushed:partner-idp-oidc`.
    pub sources: Vec<String>,
}

/// Why the sources cannot be combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// The PCT is about another requesting party than the other claims: not usable here.
    PctOfAnotherParty,
}

/// The merged party and the list of its sources, for the policy context and the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub party: RequestingParty,
    pub sources: Vec<String>,
}

fn label(p: &RequestingParty) -> String {
    format!("{}:{}", p.source.as_str(), p.verifier.as_deref().unwrap_or(""))
}

fn same_person(a: &RequestingParty, b: &RequestingParty) -> bool {
    a.iss == b.iss && a.sub == b.sub
}

/// Layers `top` over `base`: same person, `top`'s values win; `top` names the source.
fn layer(base: &RequestingParty, top: &RequestingParty) -> RequestingParty {
    let mut claims = base.claims.clone();
    claims.extend(top.claims.iter().map(|(k, v)| (k.clone(), v.clone())));
    RequestingParty {
        iss: top.iss.clone(),
        sub: top.sub.clone(),
        claims,
        source: top.source,
        verifier: top.verifier.clone().or_else(|| base.verifier.clone()),
    }
}

/// Combines carried claims, a PCT and pushed claims, in that order of precedence (the freshest
/// wins a disagreement about one claim's value). A pushed token about someone else than the carried
/// claims replaces them: the person at the browser re-identified. A PCT about someone else than the
/// pushed or carried claims is refused.
pub fn merge(
    carried: Option<&Carried>,
    pct: Option<&RequestingParty>,
    pushed: Option<&RequestingParty>,
) -> Result<Merged, MergeError> {
    let mut carried = carried.filter(|c| c.party.source != ClaimSource::None);
    if let (Some(c), Some(p)) = (carried, pushed)
        && !same_person(&c.party, p)
    {
        carried = None;
    }
    let mut party: Option<RequestingParty> = None;
    let mut sources: Vec<String> = Vec::new();
    if let Some(pct) = pct {
        if carried.is_some_and(|c| !same_person(&c.party, pct)) || pushed.is_some_and(|p| !same_person(p, pct)) {
            return Err(MergeError::PctOfAnotherParty);
        }
        let mut p = pct.clone();
        p.source = ClaimSource::Pct;
        sources.push(label(&p));
        party = Some(p);
    }
    if let Some(c) = carried {
        party = Some(match &party {
            Some(base) => layer(base, &c.party),
            None => c.party.clone(),
        });
        sources.extend(c.sources.iter().cloned());
    }
    if let Some(p) = pushed {
        sources.push(label(p));
        party = Some(match &party {
            Some(base) => layer(base, p),
            None => p.clone(),
        });
    }
    sources.dedup();
    Ok(Merged { party: party.unwrap_or_else(RequestingParty::anonymous), sources })
}

/// What a PCT keeps (Grant §3.3.3, checklist A-13): the party's identity and only the claims in
/// `keep` (those the granting policies read), never more.
pub fn persistable(party: &RequestingParty, keep: &std::collections::BTreeSet<String>) -> RequestingParty {
    RequestingParty {
        iss: party.iss.clone(),
        sub: party.sub.clone(),
        claims: party.claims.iter().filter(|(k, _)| keep.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        source: ClaimSource::Pct,
        verifier: party.verifier.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn party(sub: &str, claims: &[(&str, &str)], source: ClaimSource) -> RequestingParty {
        RequestingParty {
            iss: Some("https://idp".into()),
            sub: Some(sub.into()),
            claims: claims.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect(),
            source,
            verifier: Some("idp".into()),
        }
    }

    #[test]
    fn nothing_presented_is_the_anonymous_party() {
        let m = merge(None, None, None).unwrap();
        assert_eq!(m.party, RequestingParty::anonymous());
        assert!(m.sources.is_empty());
    }

    #[test]
    fn claims_of_one_person_merge_and_the_freshest_wins() {
        let pct = party("bob", &[("npi", "1"), ("role", "nurse")], ClaimSource::Pct);
        let pushed = party("bob", &[("role", "physician")], ClaimSource::Pushed);
        let m = merge(None, Some(&pct), Some(&pushed)).unwrap();
        assert_eq!(m.party.claims["npi"], "1");
        assert_eq!(m.party.claims["role"], "physician");
        assert_eq!(m.party.source, ClaimSource::Pushed);
        assert_eq!(m.sources, ["pct:idp", "pushed:idp"]);
    }

    #[test]
    fn a_pct_of_someone_else_is_refused() {
        let pct = party("bob", &[], ClaimSource::Pct);
        let pushed = party("eve", &[], ClaimSource::Pushed);
        assert_eq!(merge(None, Some(&pct), Some(&pushed)), Err(MergeError::PctOfAnotherParty));
        let carried = Carried { party: party("eve", &[], ClaimSource::Pushed), sources: vec!["pushed:idp".into()] };
        assert_eq!(merge(Some(&carried), Some(&pct), None), Err(MergeError::PctOfAnotherParty));
    }

    #[test]
    fn a_pushed_token_of_another_person_replaces_carried_claims() {
        let carried =
            Carried { party: party("bob", &[("npi", "1")], ClaimSource::Pushed), sources: vec!["pushed:idp".into()] };
        let pushed = party("eve", &[("role", "physician")], ClaimSource::Pushed);
        let m = merge(Some(&carried), None, Some(&pushed)).unwrap();
        assert_eq!(m.party.sub.as_deref(), Some("eve"));
        assert!(!m.party.claims.contains_key("npi"), "bob's claims must not stick to eve");
    }

    #[test]
    fn a_pct_keeps_only_what_it_is_told_to() {
        let p = party("bob", &[("npi", "1"), ("email", "b@x")], ClaimSource::Pushed);
        let kept = persistable(&p, &["npi".to_owned()].into_iter().collect());
        assert_eq!(kept.claims.keys().collect::<Vec<_>>(), ["npi"]);
        assert_eq!(kept.sub.as_deref(), Some("bob"));
        assert_eq!(kept.source, ClaimSource::Pct);
    }
}
