-- Resource-owner shares (docs/policies.md, "Sharing"): each row is linked at assessment time into
-- one Cedar share template per scope. A share applies while it is neither revoked nor expired, and
-- only to a resource its owner still owns. No foreign key to `resource`, so shares stay independent
-- of how resources are stored; a share of a deleted resource can never apply.
CREATE TABLE share (
    share_id    TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    scopes      TEXT NOT NULL,                -- space-separated, as in OAuth
    matcher     TEXT NOT NULL,                -- JSON object: claim name -> value the party must present
    expires_at  BIGINT NOT NULL,              -- 0: never
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT                        -- NULL: not revoked
);
CREATE INDEX share_resource ON share (resource_id);
CREATE INDEX share_owner ON share (owner);
