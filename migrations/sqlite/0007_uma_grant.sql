-- The UMA grant (Grant §3): rotated tickets, RPTs, PCTs, refresh tokens of RPTs, pending owner
-- approvals and the audit trail. Every opaque token column holds a SHA-256 digest.

-- A ticket handed back by the token endpoint (need_info, request_submitted) is bound to the client
-- that got it and carries the claims already verified. A presented ticket is marked used, not
-- deleted, so a replay can be recognised and the grant it produced revoked (threats D1).
ALTER TABLE ticket ADD COLUMN client_id TEXT;
ALTER TABLE ticket ADD COLUMN carried TEXT;          -- JSON: verified claims carried forward
ALTER TABLE ticket ADD COLUMN pending_id TEXT;       -- the owner approval it waits for
ALTER TABLE ticket ADD COLUMN used_at BIGINT;
ALTER TABLE ticket ADD COLUMN family TEXT;           -- the grant family of the RPT it produced

-- RPTs live beside other access tokens: `kind` tells them apart; `permissions` is a JSON array of
-- {resource_id, resource_scopes, exp?}; `party` is the requesting party (`<iss>|<sub>`).
ALTER TABLE access_token ADD COLUMN kind TEXT NOT NULL DEFAULT 'access';
ALTER TABLE access_token ADD COLUMN permissions TEXT;
ALTER TABLE access_token ADD COLUMN party TEXT;
CREATE INDEX access_token_owner ON access_token (owner);

ALTER TABLE refresh_token ADD COLUMN permissions TEXT;
ALTER TABLE refresh_token ADD COLUMN party TEXT;
CREATE INDEX refresh_token_owner ON refresh_token (owner);

-- Persisted claims tokens (threats D9): a handle on claims verified earlier for one client.
CREATE TABLE pct (
    digest     TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    party      TEXT NOT NULL,                    -- `<iss>|<sub>`
    claims     TEXT NOT NULL,                    -- JSON: the requesting party as the policies saw it
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    family     TEXT                              -- the grant family of the RPT it came with
);
CREATE INDEX pct_family ON pct (family);

-- A request waiting for its resource owner (UMA request_submitted).
CREATE TABLE pending_request (
    pending_id    TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    rs_client_id  TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    party         TEXT NOT NULL,                 -- JSON: the requesting party (claims)
    permissions   TEXT NOT NULL,                 -- JSON: [{resource_id, resource_scopes}] awaiting approval
    status        TEXT NOT NULL,                 -- pending | approved | denied
    approved      TEXT,                          -- JSON: the approved permissions
    approval_expires_at BIGINT NOT NULL DEFAULT 0, -- 0: no end
    poll_interval BIGINT NOT NULL,
    last_poll_at  BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    decided_at    BIGINT
);
CREATE INDEX pending_request_owner ON pending_request (owner, rs_client_id);

-- One row per authorization assessment: who asked, for what, what was decided and why.
CREATE TABLE audit_event (
    audit_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at            BIGINT NOT NULL,
    client_id     TEXT NOT NULL,
    party_iss     TEXT,
    party_sub     TEXT,
    owner         TEXT NOT NULL,
    resource_ids  TEXT NOT NULL,                 -- JSON array
    requested     TEXT NOT NULL,                 -- JSON: resource id -> scopes
    granted       TEXT NOT NULL,                 -- JSON: resource id -> scopes
    outcome       TEXT NOT NULL,                 -- rpt | need_info | request_submitted | request_denied | invalid_scope
    policies      TEXT NOT NULL,                 -- JSON array of determining policy ids
    claim_sources TEXT NOT NULL                  -- JSON array of `<source>:<verifier>`
);
CREATE INDEX audit_event_owner ON audit_event (owner, audit_id);
