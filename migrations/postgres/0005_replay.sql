-- Single use of pushed claim tokens (src/verifiers, issue 6): one row per (verifier, token id) while
-- the token could still be accepted. The primary key makes the insert itself the replay check, so a
-- token presented twice, on any node sharing this database, is refused the second time. Token ids
-- (`jti`, SAML assertion `ID`) are stored as SHA-256 hex digests.
CREATE TABLE claim_token_use (
    verifier_id TEXT NOT NULL,
    token_id    TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (verifier_id, token_id)
);
CREATE INDEX claim_token_use_expiry ON claim_token_use (expires_at);
