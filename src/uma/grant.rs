//! The UMA grant at the token endpoint (Grant §3.3): a client redeems a permission ticket, with
//! claims, for an RPT — or learns what is missing.
//!
//! ```text
//! client auth ─► PCT? ─► pushed claim token verified? ─► ticket spent (one statement, one winner)
//!   ─► claims merged (carried ∪ PCT ∪ pushed) ─► rpt to upgrade? ─► resources now ─► requested scopes
//!   ─► policy engine per scope ─► combine (A-4) ─► RPT (+refresh, +PCT) | need_info | request_submitted
//!                                                    | request_denied | invalid_scope   (+ audit, one tx)
//! ```
//!
//! Every answer that hands a ticket back hands a new one bound to this client, carrying the claims
//! verified so far; the presented ticket is dead from the moment it was spent.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::UnixTime;
use crate::config::RptFormat;
use crate::oauth::client::{AuthMethod, Client, GrantType};
use crate::oauth::grants::TokenResponse;
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError};
use crate::policy::sharing;
use crate::policy::{
    AssessmentRequest, ClaimSource, ClientInfo, Outcome, PermissionRequest, PolicyId, RequestingParty, RequiredClaim,
    ResourceDecision, ResourceInfo, required_claims,
};
use crate::state::AppState;
use crate::store::{
    AuditRecord, IssueRpt, PctRecord, PendingRequestRecord, RefreshTokenRecord, ResourceRecord, RotateTicket,
    RptRecord, Store, TicketRecord,
};
use crate::uma::assessment::{
    Approvals, RegisteredResource, Requested, ScopeError, Unavailable, Verdict, combine, requested_scopes,
};
use crate::uma::claims::{Carried, Merged, merge, persistable};
use crate::uma::permission::Permission;
use crate::uma::resources::description_of;
use crate::uma::rpt::{self, GrantedPermission, RptClaims};
use crate::verifiers::{PushingClient, Rejection, VerifyError};

/// One description for every unusable ticket (unknown, expired, used, another client's), so the
/// endpoint is no oracle for a ticket's state (checklist S-ENUM-a).
const TICKET_REFUSED: &str = "the ticket is invalid, expired or already used";
/// How long an expired RPT can still be upgraded (checklist A-12); the sweeper keeps its row as long.
const UPGRADE_GRACE_SECS: i64 = 86_400;
/// The largest `interval` a client that polls too fast is told to wait (checklist A-22).
const MAX_INTERVAL_SECS: i64 = 300;

/// The grant's parameters (Grant §3.3.1), empty ones already removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct UmaParams<'a> {
    pub ticket: Option<&'a str>,
    pub claim_token: Option<&'a str>,
    pub claim_token_format: Option<&'a str>,
    pub pct: Option<&'a str>,
    pub rpt: Option<&'a str>,
    pub scope: Option<&'a str>,
}

fn invalid_grant(description: &'static str, detail: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant).describe(description).detail(detail)
}

fn random() -> Result<OpaqueToken, OAuthError> {
    OpaqueToken::generate().map_err(|_| OAuthError::server_error("the random generator failed"))
}

fn to_json<T: Serialize>(v: &T) -> Result<String, OAuthError> {
    serde_json::to_string(v).map_err(OAuthError::server_error)
}

pub async fn grant(
    state: &AppState,
    client: &Client,
    p: UmaParams<'_>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let store = &state.store;
    if !client.metadata.allows_grant(GrantType::UmaTicket) {
        return Err(
            OAuthError::new(ErrorCode::UnauthorizedClient).describe("the client is not registered for the UMA grant")
        );
    }
    let ticket = p.ticket.ok_or_else(|| OAuthError::invalid_request("`ticket` is required"))?;
    let pushed_token = match (p.claim_token, p.claim_token_format) {
        (Some(t), Some(f)) => Some((t, f)),
        (None, None) => None,
        _ => return Err(OAuthError::invalid_request("`claim_token` and `claim_token_format` go together")),
    };
    // The PCT and the pushed token are checked before the ticket is spent, so that a store or IdP
    // outage (503) does not cost the client its ticket.
    let (pct_party, pct_expires_at) = match p.pct {
        Some(v) => {
            let (party, exp) = pct_claims(store, client, v, now).await?;
            (Some(party), Some(exp))
        }
        None => (None, None),
    };
    let pushed = match pushed_token {
        Some((raw, format)) => {
            let pusher = PushingClient {
                client_id: &client.client_id,
                is_public: client.metadata.token_endpoint_auth_method == AuthMethod::None,
            };
            match state.verifiers.verify(format, raw, pusher, now).await {
                Err(e) if e.category() == Rejection::Unavailable => {
                    return Err(OAuthError::unavailable(e.detail().to_owned()));
                }
                r => Some(r),
            }
        }
        None => None,
    };

    let digest = OpaqueToken::presented(ticket).digest();
    let Some(t) = store.spend_ticket(digest.as_str(), &client.client_id, now).await? else {
        return Err(invalid_grant(TICKET_REFUSED, "unknown, expired, used or foreign ticket"));
    };
    let ticket_perms: Vec<Permission> = serde_json::from_str(&t.permissions).map_err(OAuthError::server_error)?;
    let carried: Option<Carried> =
        t.carried.as_deref().map(serde_json::from_str).transpose().map_err(OAuthError::server_error)?;
    let (pushed_party, refused) = match pushed {
        Some(Ok(v)) => (Some(v.to_party()), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let merged = merge(carried.as_ref(), pct_party.as_ref(), pushed_party.as_ref()).map_err(|_| {
        invalid_grant("the PCT is not valid for this request", "PCT of another requesting party than the claims")
    })?;
    let old_rpt = match p.rpt {
        Some(v) => rpt_to_upgrade(store, client, &t.owner, v, now).await?,
        None => None,
    };

    let mut a = Assessment::new(state, client, &t, &ticket_perms, &merged, now);
    a.pct_expires_at = pct_expires_at;
    let ticket_assessment = match assess_ticket(state, client, &t, &ticket_perms, &merged.party, p.scope, now).await? {
        Ok(x) => x,
        Err(e) => {
            store.insert_audit(&a.record("invalid_scope", &[], &[])).await?;
            let detail = match e {
                ScopeError::Unknown(s) => format!("scope `{s}` is offered by no resource of the ticket"),
                ScopeError::NothingToAssess(r) => format!("nothing to assess on resource `{r}`"),
            };
            return Err(OAuthError::new(ErrorCode::InvalidScope)
                .describe("a requested scope is not available on the ticket's resources")
                .detail(detail));
        }
    };
    let TicketAssessment { requested, unavailable, shares, decisions } = ticket_assessment;
    a.requested = requested.iter().map(|r| (r.resource_id.clone(), r.scopes.clone())).collect();
    // An owner's decision holds for the party and client it was asked for, nobody else: a ticket
    // whose claims now name someone else starts a new request.
    let pending = match &t.pending_id {
        Some(id) => store.find_pending(id).await?.filter(|p| {
            p.client_id == client.client_id
                && serde_json::from_str::<RequestingParty>(&p.party)
                    .is_ok_and(|asker| asker.entity_id() == merged.party.entity_id())
        }),
        None => None,
    };
    let client_info = ClientInfo { id: client.client_id.clone(), name: client.metadata.client_name.clone() };
    let approvals = PendingApprovals { pending: pending.as_ref(), now };
    let (verdict, policies) = combine(&decisions, &unavailable, &approvals, state.settings.uma.partial_grants);

    if let Some(e) = refused {
        // Checklist A-10: a refused claim token grants nothing; the client learns what is acceptable.
        return Err(a.need_info(&verdict, &policies, Some(&e)).await?);
    }
    match verdict {
        Verdict::Rpt(granted) => {
            let granting = granting_policies(&decisions);
            let upgrade = match old_rpt {
                Some(old) => Some(a.reassess(old, &client_info, &policies).await?),
                None => None,
            };
            a.issue(granted, &policies, &granting, &shares, upgrade, p.rpt).await
        }
        Verdict::NeedInfo(_) => Err(a.need_info(&verdict, &policies, None).await?),
        Verdict::Submitted(awaiting) => Err(a.submitted(awaiting, pending, &policies).await?),
        Verdict::Denied => {
            store.insert_audit(&a.record("request_denied", &[], &policies)).await?;
            Err(OAuthError::new(ErrorCode::RequestDenied)
                .describe("the authorization policies deny this request")
                .detail("request denied by policy"))
        }
    }
}

/// The policies' decisions on a ticket's permissions for one requesting party (Grant §3.3.4).
struct TicketAssessment {
    requested: Vec<Requested>,
    unavailable: Vec<Unavailable>,
    shares: Vec<sharing::Share>,
    decisions: Vec<ResourceDecision>,
}

/// Assesses a ticket's permissions for `party`: the resources as they are now, the scopes to assess
/// (§3.3.4, A-5), the owner's shares, and the policy engine's decision per scope. No write.
async fn assess_ticket(
    state: &AppState,
    client: &Client,
    t: &TicketRecord,
    ticket_perms: &[Permission],
    party: &RequestingParty,
    scope: Option<&str>,
    now: UnixTime,
) -> Result<Result<TicketAssessment, ScopeError>, OAuthError> {
    let store = &state.store;
    let ids: Vec<&str> = ticket_perms.iter().map(|p| p.resource_id.as_str()).collect();
    let records = store.find_resources(&ids, &t.owner, Some(&t.rs_client_id)).await?;
    let mut registered = Vec::with_capacity(records.len());
    let mut infos = Vec::with_capacity(records.len());
    for rec in &records {
        let (info, scopes) = resource_view(rec)?;
        registered.push(RegisteredResource { resource_id: rec.resource_id.clone(), scopes });
        infos.push(info);
    }
    let (requested, unavailable) = match requested_scopes(ticket_perms, &registered, &client.metadata.scopes(), scope) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    let shares = sharing::active_shares(store, &ids, now).await.map_err(OAuthError::unavailable)?;
    let permissions: Vec<PermissionRequest> = requested
        .iter()
        .filter_map(|r| {
            infos
                .iter()
                .find(|i| i.id == r.resource_id)
                .map(|i| PermissionRequest { resource: i.clone(), scopes: r.scopes.clone() })
        })
        .collect();
    let client_info = ClientInfo { id: client.client_id.clone(), name: client.metadata.client_name.clone() };
    let decisions = state.policies.assess(&AssessmentRequest {
        party,
        client: &client_info,
        permissions: &permissions,
        shares: &shares,
        now,
        derive_required_claims: true,
    });
    Ok(Ok(TicketAssessment { requested, unavailable, shares, decisions }))
}

/// What the policies still need to know about `party` to grant the ticket's request: the claims page
/// shows it and offers the sign-in options that can supply it. Empty when nothing is missing.
pub async fn claims_needed(
    state: &AppState,
    client: &Client,
    t: &TicketRecord,
    party: &RequestingParty,
    now: UnixTime,
) -> Result<Vec<RequiredClaim>, OAuthError> {
    let perms: Vec<Permission> = serde_json::from_str(&t.permissions).map_err(OAuthError::server_error)?;
    let Ok(x) = assess_ticket(state, client, t, &perms, party, None, now).await? else {
        return Ok(Vec::new());
    };
    let approvals = PendingApprovals { pending: None, now };
    match combine(&x.decisions, &x.unavailable, &approvals, state.settings.uma.partial_grants).0 {
        Verdict::NeedInfo(needed) => Ok(required_claims(&needed, &*state.verifiers)),
        _ => Ok(Vec::new()),
    }
}

/// The claims of a PCT this client holds (Grant §3.3.1; checklist A-13: anything else is
/// `invalid_grant`).
async fn pct_claims(
    store: &Store,
    client: &Client,
    value: &str,
    now: UnixTime,
) -> Result<(RequestingParty, UnixTime), OAuthError> {
    const REFUSED: &str = "the PCT is invalid, expired or revoked";
    let rec = store.find_pct(OpaqueToken::presented(value).digest().as_str()).await?;
    let rec = rec
        .filter(|r| r.revoked_at.is_none() && r.expires_at > now)
        .ok_or_else(|| invalid_grant(REFUSED, "unknown, expired or revoked PCT"))?;
    if rec.client_id != client.client_id {
        tracing::warn!(client_id = %client.client_id, "a client presented another client's PCT");
        return Err(invalid_grant(REFUSED, "PCT of another client"));
    }
    let mut party: RequestingParty = serde_json::from_str(&rec.claims).map_err(OAuthError::server_error)?;
    party.source = ClaimSource::Pct;
    Ok((party, rec.expires_at))
}

const UPGRADE_REFUSED: &str = "the RPT cannot be upgraded by this request";

/// The RPT an upgrade builds on (checklist A-12): `None` when `value` is no RPT at all (ignored);
/// `invalid_grant` when it is an RPT this client may not extend. Whether it is the same requesting
/// party is checked when the RPT is issued: the claims may still be missing at this round.
async fn rpt_to_upgrade(
    store: &Store,
    client: &Client,
    owner: &str,
    value: &str,
    now: UnixTime,
) -> Result<Option<RptRecord>, OAuthError> {
    const REFUSED: &str = UPGRADE_REFUSED;
    let Some(rec) = store.find_rpt(crate::oauth::tokens::TokenDigest::of(value).as_str()).await? else {
        return Ok(None);
    };
    if rec.expires_at + UPGRADE_GRACE_SECS <= now {
        return Ok(None);
    }
    if rec.revoked_at.is_some() {
        return Err(invalid_grant(REFUSED, "revoked RPT"));
    }
    if rec.client_id != client.client_id || rec.owner != owner {
        return Err(invalid_grant(REFUSED, "RPT of another client or resource owner"));
    }
    Ok(Some(rec))
}

/// The permits (file policies and shares) behind every granted scope: what a PCT may keep.
fn granting_policies(decisions: &[ResourceDecision]) -> Vec<PolicyId> {
    let set: BTreeSet<PolicyId> = decisions
        .iter()
        .flat_map(|d| d.scopes.iter())
        .filter(|s| s.outcome == Outcome::Granted)
        .flat_map(|s| s.policies.iter().cloned())
        .collect();
    set.into_iter().collect()
}

/// An RPT to upgrade, with those of its permissions that the policies still grant.
struct Upgrade {
    old: RptRecord,
    kept: Vec<GrantedPermission>,
    /// UMA's `upgraded`: every permission of the old RPT is still granted.
    all_kept: bool,
    /// The resource servers of the kept permissions (a JWT RPT's `aud`).
    resource_servers: Vec<String>,
}

/// The owner's decision on the pending request this ticket waits for.
struct PendingApprovals<'a> {
    pending: Option<&'a PendingRequestRecord>,
    now: UnixTime,
}

impl Approvals for PendingApprovals<'_> {
    fn decision(&self, resource_id: &str, scope: &str) -> Option<Result<Option<UnixTime>, ()>> {
        let p = self.pending?;
        match p.status.as_str() {
            "approved" => {
                let approved: Vec<Permission> = p.approved.as_deref().and_then(|a| serde_json::from_str(a).ok())?;
                let covered = approved
                    .iter()
                    .any(|a| a.resource_id == resource_id && a.resource_scopes.iter().any(|s| s == scope));
                let live = p.approval_expires_at == 0 || p.approval_expires_at > self.now;
                match (covered, live) {
                    (true, true) => Some(Ok((p.approval_expires_at != 0).then_some(p.approval_expires_at))),
                    // Approved for other scopes only, or the approval ended: refused for this one.
                    _ => Some(Err(())),
                }
            }
            "denied" => Some(Err(())),
            _ => None,
        }
    }
}

/// One assessment in progress: what the audit record and the responses need.
struct Assessment<'a> {
    state: &'a AppState,
    client: &'a Client,
    ticket: &'a TicketRecord,
    ticket_perms: &'a [Permission],
    merged: &'a Merged,
    now: UnixTime,
    requested: BTreeMap<String, Vec<String>>,
    /// The end of the PCT presented, if any.
    pct_expires_at: Option<UnixTime>,
}

impl<'a> Assessment<'a> {
    fn new(
        state: &'a AppState,
        client: &'a Client,
        ticket: &'a TicketRecord,
        ticket_perms: &'a [Permission],
        merged: &'a Merged,
        now: UnixTime,
    ) -> Self {
        let requested = ticket_perms.iter().map(|p| (p.resource_id.clone(), p.resource_scopes.clone())).collect();
        Assessment { state, client, ticket, ticket_perms, merged, now, requested, pct_expires_at: None }
    }

    fn record(&self, outcome: &str, granted: &[GrantedPermission], policies: &[PolicyId]) -> AuditRecord {
        let ids: Vec<&str> = self.ticket_perms.iter().map(|p| p.resource_id.as_str()).collect();
        let granted: BTreeMap<&str, &Vec<String>> =
            granted.iter().map(|g| (g.resource_id.as_str(), &g.resource_scopes)).collect();
        AuditRecord {
            audit_id: 0,
            at: self.now,
            client_id: self.client.client_id.clone(),
            party_iss: self.merged.party.iss.clone(),
            party_sub: self.merged.party.sub.clone(),
            owner: self.ticket.owner.clone(),
            resource_ids: json!(ids).to_string(),
            requested: json!(self.requested).to_string(),
            granted: json!(granted).to_string(),
            outcome: outcome.to_owned(),
            policies: json!(policies).to_string(),
            claim_sources: json!(self.merged.sources).to_string(),
        }
    }

    /// A new ticket for this client, carrying the permissions and the claims verified so far.
    fn next_ticket(
        &self,
        lifetime: i64,
        pending_id: Option<String>,
    ) -> Result<(OpaqueToken, TicketRecord), OAuthError> {
        let token = random()?;
        let carried = (self.merged.party.source != ClaimSource::None)
            .then(|| to_json(&Carried { party: self.merged.party.clone(), sources: self.merged.sources.clone() }))
            .transpose()?;
        let rec = TicketRecord {
            digest: token.digest().as_str().to_owned(),
            owner: self.ticket.owner.clone(),
            rs_client_id: self.ticket.rs_client_id.clone(),
            permissions: self.ticket.permissions.clone(),
            created_at: self.now,
            expires_at: self.now + lifetime,
            client_id: Some(self.client.client_id.clone()),
            carried,
            pending_id,
        };
        Ok((token, rec))
    }

    /// `need_info` (Grant §3.3.6) with a rotated ticket. For a refused claim token the required
    /// claims are those the policies still need or, when none, every format and issuer trusted.
    async fn need_info(
        &self,
        verdict: &Verdict,
        policies: &[PolicyId],
        refused: Option<&VerifyError>,
    ) -> Result<OAuthError, OAuthError> {
        let claims: Vec<Value> = match verdict {
            Verdict::NeedInfo(needed) => required_claims(needed, &*self.state.verifiers)
                .into_iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            _ => self
                .state
                .verifiers
                .summary()
                .into_iter()
                .map(|(_, format, issuer)| json!({"claim_token_format": [format], "issuer": [issuer]}))
                .collect(),
        };
        let (token, rec) = self.next_ticket(self.state.settings.tokens.ticket, self.ticket.pending_id.clone())?;
        let audit = self.record("need_info", &[], policies);
        self.state
            .store
            .rotate_ticket(&RotateTicket { ticket: &rec, new_pending: None, polled: None, audit: &audit })
            .await?;
        let (description, detail) = match refused {
            Some(e) => (e.public_description(), format!("claim token refused: {:?}", e.reason())),
            None => ("more claims about the requesting party are needed", "need_info".to_owned()),
        };
        let mut err = OAuthError::new(ErrorCode::NeedInfo)
            .describe(description)
            .detail(detail)
            .with_member("ticket", json!(token.expose()));
        if !claims.is_empty() {
            err = err.with_member("required_claims", Value::Array(claims));
        }
        // Grant §3.3.6: the client may send the person to gather claims interactively, if it has
        // somewhere to be sent back to and this server has a way to sign in.
        if !self.client.metadata.claims_redirect_uris.is_empty()
            && crate::uma::gathering::offered(&self.state.settings, &self.state.verifiers)
        {
            let endpoint = self.state.settings.endpoint(crate::http::claims::CLAIMS_PATH);
            err = err.with_member("redirect_user", json!(endpoint));
        }
        Ok(err)
    }

    /// `request_submitted` (Grant §3.3.6): the request waits for the owner; a poll gets a new ticket,
    /// and a poll faster than the interval a longer interval (checklist A-22).
    async fn submitted(
        &self,
        awaiting: Vec<Permission>,
        pending: Option<PendingRequestRecord>,
        policies: &[PolicyId],
    ) -> Result<OAuthError, OAuthError> {
        {
            let base = self.state.settings.uma.poll_interval_secs;
            let (pending_id, interval, new_pending) = match pending.filter(|p| p.status == "pending") {
                Some(p) => {
                    let too_fast = self.now - p.last_poll_at < p.poll_interval;
                    let interval =
                        if too_fast { (p.poll_interval * 2).min(MAX_INTERVAL_SECS) } else { p.poll_interval };
                    (p.pending_id, interval, None)
                }
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    let rec = PendingRequestRecord {
                        pending_id: id.clone(),
                        owner: self.ticket.owner.clone(),
                        rs_client_id: self.ticket.rs_client_id.clone(),
                        client_id: self.client.client_id.clone(),
                        party: to_json(&self.merged.party)?,
                        permissions: to_json(&awaiting)?,
                        status: "pending".to_owned(),
                        approved: None,
                        approval_expires_at: 0,
                        poll_interval: base,
                        last_poll_at: self.now,
                        created_at: self.now,
                        decided_at: None,
                    };
                    (id, base, Some(rec))
                }
            };
            let (token, rec) =
                self.next_ticket(self.state.settings.uma.pending_ticket_lifetime_secs, Some(pending_id.clone()))?;
            let audit = self.record("request_submitted", &[], policies);
            let polled = new_pending.is_none().then_some((pending_id.as_str(), interval));
            self.state
                .store
                .rotate_ticket(&RotateTicket { ticket: &rec, new_pending: new_pending.as_ref(), polled, audit: &audit })
                .await?;
            Ok(OAuthError::new(ErrorCode::RequestSubmitted)
                .describe("the resource owner has been asked to approve this request")
                .detail("request submitted to the owner")
                .with_member("ticket", json!(token.expose()))
                .with_member("interval", json!(interval)))
        }
    }

    /// Checklist A-12 and threats: an upgrade re-assesses the old RPT's permissions for this party
    /// now, so carrying them into a new token never extends a grant the policies no longer make.
    /// Permissions that needed a one-time owner approval are not carried (the owner can remember it).
    async fn reassess(
        &self,
        old: RptRecord,
        client: &ClientInfo,
        policies: &[PolicyId],
    ) -> Result<Upgrade, OAuthError> {
        let store = &self.state.store;
        if old.party != self.merged.party.entity_id() {
            store.insert_audit(&self.record("invalid_grant", &[], policies)).await?;
            return Err(invalid_grant(UPGRADE_REFUSED, "RPT of another requesting party"));
        }
        let held: Vec<GrantedPermission> = serde_json::from_str(&old.permissions).map_err(OAuthError::server_error)?;
        let live: Vec<&GrantedPermission> = held.iter().filter(|p| p.is_valid_at(self.now)).collect();
        let ids: Vec<&str> = live.iter().map(|p| p.resource_id.as_str()).collect();
        let records = store.find_resources(&ids, &old.owner, None).await?;
        let mut requests = Vec::new();
        for rec in &records {
            let (resource, registered) = resource_view(rec)?;
            let scopes: Vec<String> = live
                .iter()
                .filter(|p| p.resource_id == rec.resource_id)
                .flat_map(|p| p.resource_scopes.iter().cloned())
                .filter(|s| registered.contains(s))
                .collect();
            requests.push(PermissionRequest { resource, scopes });
        }
        let shares = sharing::active_shares(store, &ids, self.now).await.map_err(OAuthError::unavailable)?;
        let decisions = self.state.policies.assess(&AssessmentRequest {
            party: &self.merged.party,
            client,
            permissions: &requests,
            shares: &shares,
            now: self.now,
            derive_required_claims: false,
        });
        let mut kept: Vec<GrantedPermission> = Vec::new();
        for d in &decisions {
            for s in d.scopes.iter().filter(|s| s.is_granted()) {
                // Each keeps its own end: the longest the old RPT gave it.
                let exp = live
                    .iter()
                    .filter(|p| p.resource_id == d.resource_id && p.resource_scopes.contains(&s.scope))
                    .map(|p| p.exp)
                    .reduce(|a, b| a.zip(b).map(|(x, y)| x.max(y)));
                rpt::add(&mut kept, &d.resource_id, &s.scope, exp.flatten());
            }
        }
        let all_kept = held.iter().all(|p| {
            p.resource_scopes
                .iter()
                .all(|s| kept.iter().any(|k| k.resource_id == p.resource_id && k.resource_scopes.contains(s)))
        });
        let resource_servers = records
            .into_iter()
            .filter(|r| kept.iter().any(|k| k.resource_id == r.resource_id))
            .map(|r| r.rs_client_id)
            .collect();
        Ok(Upgrade { old, kept, all_kept, resource_servers })
    }

    /// The RPT (Grant §3.3.5), its refresh token and PCT, an upgrade's retirement, the audit: one write.
    async fn issue(
        &self,
        granted: Vec<GrantedPermission>,
        policies: &[PolicyId],
        granting: &[PolicyId],
        shares: &[sharing::Share],
        upgrade: Option<Upgrade>,
        presented_rpt: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let state = self.state;
        let store = &state.store;
        let lifetimes = &state.settings.tokens;
        let audit = self.record("rpt", &granted, policies);
        let (permissions, upgraded, mut aud) = match &upgrade {
            Some(u) => (rpt::merge(&u.kept, &granted, self.now), Some(u.all_kept), u.resource_servers.clone()),
            None => (granted, None, Vec::new()),
        };
        aud.push(self.ticket.rs_client_id.clone());
        let family = uuid::Uuid::new_v4().to_string();
        let party_id = self.merged.party.entity_id();
        let (minted, rpt_rec) = mint_rpt(
            state,
            RptDraft {
                client_id: &self.client.client_id,
                owner: &self.ticket.owner,
                party: &party_id,
                family: &family,
                permissions: &permissions,
                aud,
            },
            self.now,
        )?;
        let refresh = if self.client.metadata.allows_grant(GrantType::RefreshToken) {
            Some(refresh_token_for(&rpt_rec, self.now + lifetimes.refresh_token)?)
        } else {
            None
        };
        let pct = self.pct(granting, shares, &family)?;
        let done = store
            .issue_rpt(&IssueRpt {
                ticket_digest: Some(&self.ticket.digest),
                rpt: &rpt_rec,
                refresh: refresh.as_ref().map(|(_, r)| r),
                pct: pct.as_ref().map(|(_, r)| r),
                retire: upgrade.as_ref().map(|u| (u.old.digest.as_str(), u.old.family.as_str())),
                family_must_be_live: false,
                audit: Some(&audit),
            })
            .await?;
        if !done {
            store.insert_audit(&self.record("invalid_grant", &[], policies)).await?;
            return Err(invalid_grant(TICKET_REFUSED, "lost a concurrent upgrade, or the ticket was replayed"));
        }
        tracing::info!(client_id = %self.client.client_id, owner = %self.ticket.owner, upgraded = ?upgraded, "RPT issued");
        Ok(TokenResponse {
            access_token: minted.value,
            token_type: "Bearer",
            expires_in: lifetimes.rpt,
            refresh_token: refresh.map(|(t, _)| t.expose().to_owned()),
            scope: None,
            pct: pct.map(|(t, _)| t.expose().to_owned()),
            // `upgraded` answers an `rpt` that was an RPT; an ignored one gets no member (A-12).
            upgraded: presented_rpt.and(upgraded),
        })
    }

    /// A PCT when the client opted in and freshly pushed claims led to the grant; it keeps
    /// only the claims the granting policies read (checklist A-13).
    fn pct(
        &self,
        granting: &[PolicyId],
        shares: &[sharing::Share],
        family: &str,
    ) -> Result<Option<(OpaqueToken, PctRecord)>, OAuthError> {
        let party = &self.merged.party;
        // Claims gathered in the browser are not persisted: the requesting party was not asked for
        // consent to that (checklist A-13), so they hold for this request only.
        let fresh = party.source == ClaimSource::Pushed;
        if !self.client.metadata.persist_pushed_claims || !fresh || party.iss.is_none() {
            return Ok(None);
        }
        let mut keep = self.state.policies.claims_to_persist(granting);
        for id in granting {
            if let Some(share) = shares.iter().find(|s| id.as_str().starts_with(&format!("share:{}:", s.id))) {
                keep.extend(share.matcher.0.keys().cloned());
            }
        }
        let token = random()?;
        let rec = PctRecord {
            digest: token.digest().as_str().to_owned(),
            client_id: self.client.client_id.clone(),
            party: party.entity_id(),
            claims: to_json(&persistable(party, &keep))?,
            issued_at: self.now,
            // Claims taken from an earlier PCT never outlive it in a new one.
            expires_at: (self.now + self.state.settings.tokens.pct).min(self.pct_expires_at.unwrap_or(i64::MAX)),
            revoked_at: None,
            family: Some(family.to_owned()),
        };
        Ok(Some((token, rec)))
    }
}

/// A registered resource as the policy engine sees it, and its registered scopes.
fn resource_view(rec: &ResourceRecord) -> Result<(ResourceInfo, Vec<String>), OAuthError> {
    let d = description_of(rec)?;
    let info = ResourceInfo {
        id: rec.resource_id.clone(),
        owner: rec.owner.clone(),
        resource_type: d.resource_type,
        name: d.name,
    };
    Ok((info, d.resource_scopes))
}

/// What an RPT is made of, whether a grant or a refresh issues it.
struct RptDraft<'a> {
    client_id: &'a str,
    owner: &'a str,
    party: &'a str,
    family: &'a str,
    permissions: &'a [GrantedPermission],
    /// The resource servers of the permissions: a JWT RPT's `aud` (an opaque RPT does not use it).
    aud: Vec<String>,
}

/// Mints an RPT in the configured format, with the row the store keeps of it.
fn mint_rpt(state: &AppState, d: RptDraft<'_>, now: UnixTime) -> Result<(rpt::MintedRpt, RptRecord), OAuthError> {
    let mut aud = d.aud;
    aud.sort();
    aud.dedup();
    let expires_at = now + state.settings.tokens.rpt;
    let minted = rpt::mint(
        state.settings.uma.rpt_format,
        &state.keys,
        &RptClaims {
            iss: state.settings.issuer.clone(),
            aud,
            exp: expires_at,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            client_id: d.client_id.to_owned(),
            permissions: d.permissions.to_vec(),
        },
    )?;
    let record = RptRecord {
        digest: minted.digest.as_str().to_owned(),
        client_id: d.client_id.to_owned(),
        owner: d.owner.to_owned(),
        party: d.party.to_owned(),
        permissions: to_json(&d.permissions)?,
        issued_at: now,
        expires_at,
        family: d.family.to_owned(),
        revoked_at: None,
    };
    Ok((minted, record))
}

/// A refresh token that can reissue `rpt`'s permissions, in its grant family, until `expires_at`.
fn refresh_token_for(rpt: &RptRecord, expires_at: UnixTime) -> Result<(OpaqueToken, RefreshTokenRecord), OAuthError> {
    let token = random()?;
    let rec = RefreshTokenRecord {
        digest: token.digest().as_str().to_owned(),
        client_id: rpt.client_id.clone(),
        owner: rpt.owner.clone(),
        scope: String::new(),
        family: rpt.family.clone(),
        issued_at: rpt.issued_at,
        expires_at,
        permissions: Some(rpt.permissions.clone()),
        party: Some(rpt.party.clone()),
    };
    Ok((token, rec))
}

/// The refresh token grant for an RPT (Grant §3.6): the same or fewer permissions, never a new
/// assessment; the refresh token rotates within its family.
pub async fn refresh_rpt(
    state: &AppState,
    client: &Client,
    spent: &RefreshTokenRecord,
    scope: Option<&str>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let held: Vec<GrantedPermission> =
        serde_json::from_str(spent.permissions.as_deref().unwrap_or("[]")).map_err(OAuthError::server_error)?;
    let permissions = rpt::downscope(&held, scope, now).map_err(|extra| {
        OAuthError::new(ErrorCode::InvalidScope)
            .describe("a refresh cannot widen the original grant")
            .detail(format!("scope `{extra}` not in the original grant"))
    })?;
    if permissions.is_empty() {
        return Err(invalid_grant("the refresh token is invalid, expired or revoked", "every permission has ended"));
    }
    let aud = match state.settings.uma.rpt_format {
        RptFormat::Opaque => Vec::new(),
        RptFormat::Jwt => {
            let ids: Vec<&str> = permissions.iter().map(|p| p.resource_id.as_str()).collect();
            state.store.find_resources(&ids, &spent.owner, None).await?.into_iter().map(|r| r.rs_client_id).collect()
        }
    };
    let party = spent.party.clone().unwrap_or_default();
    let (minted, rpt_rec) = mint_rpt(
        state,
        RptDraft {
            client_id: &client.client_id,
            owner: &spent.owner,
            party: &party,
            family: &spent.family,
            permissions: &permissions,
            aud,
        },
        now,
    )?;
    // A refresh never extends the grant: the new refresh token ends when the spent one would have.
    let (refresh, refresh_rec) = refresh_token_for(&rpt_rec, spent.expires_at)?;
    let done = state
        .store
        .issue_rpt(&IssueRpt {
            ticket_digest: None,
            rpt: &rpt_rec,
            refresh: Some(&refresh_rec),
            pct: None,
            retire: None,
            family_must_be_live: true,
            audit: None,
        })
        .await?;
    if !done {
        return Err(invalid_grant("the refresh token is invalid, expired or revoked", "family revoked meanwhile"));
    }
    Ok(TokenResponse {
        access_token: minted.value,
        token_type: "Bearer",
        expires_in: state.settings.tokens.rpt,
        refresh_token: Some(refresh.expose().to_owned()),
        scope: None,
        pct: None,
        upgraded: None,
    })
}
