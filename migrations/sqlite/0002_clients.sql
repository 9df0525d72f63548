-- OAuth clients (UMA clients and resource servers alike). Secrets and registration access tokens are
-- stored only as SHA-256 digests. `metadata` is the validated RFC 7591 metadata as JSON text.
CREATE TABLE client (
    client_id                 TEXT PRIMARY KEY,
    secret_digest             TEXT,
    registration_token_digest TEXT UNIQUE,
    metadata                  TEXT NOT NULL,
    source                    TEXT NOT NULL,      -- config | cli | dynamic
    issued_at                 BIGINT NOT NULL,
    secret_expires_at         BIGINT NOT NULL,    -- 0: never
    updated_at                BIGINT NOT NULL
);

-- `jti` of every client assertion seen, until it expires: a replay on any node fails (RFC 7523 §3).
CREATE TABLE client_assertion_jti (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_jti_expiry ON client_assertion_jti (expires_at);

-- Initial access tokens issued by `tessera registration token` (RFC 7591 §3).
CREATE TABLE initial_access_token (
    digest     TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL                    -- 0: never
);

-- Access tokens issued to clients (client_credentials now; PATs build on it). Digest only.
CREATE TABLE access_token (
    digest     TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_token_client ON access_token (client_id);
