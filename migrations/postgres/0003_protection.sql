-- Resource owners, browser sessions, the authorization code grant, refresh tokens, resources and
-- permission tickets (UMA FedAuthz §§1–4). Every opaque token column holds a SHA-256 digest.

CREATE TABLE account (
    account_id    TEXT PRIMARY KEY,            -- the resource owner's identifier (username)
    password_hash TEXT,                        -- argon2 PHC string; NULL: cannot sign in with a password
    attributes    TEXT NOT NULL,               -- JSON object
    created_at    BIGINT NOT NULL
);

-- A signed-in browser. Designed for local and (later) federated sign-in alike.
CREATE TABLE browser_session (
    digest      TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES account (account_id) ON DELETE CASCADE,
    auth_method TEXT NOT NULL,                 -- password | federated
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- An authorization request waiting for the owner to sign in and consent, bound to one browser.
CREATE TABLE authorization_request (
    digest         TEXT PRIMARY KEY,           -- of the request handle carried by the form
    browser_digest TEXT NOT NULL,              -- of the cookie that binds it to the browser
    client_id      TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    state          TEXT,
    code_challenge TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE authorization_code (
    digest         TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    account_id     TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);

-- Access tokens gain the resource owner they act for (a PAT identifies RS and owner), the grant
-- family they belong to (so a replayed code or refresh token revokes the family), and revocation.
ALTER TABLE access_token ADD COLUMN owner TEXT;
ALTER TABLE access_token ADD COLUMN family TEXT;
ALTER TABLE access_token ADD COLUMN revoked_at BIGINT;
CREATE INDEX access_token_family ON access_token (family);

CREATE TABLE refresh_token (
    digest     TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    owner      TEXT NOT NULL,
    scope      TEXT NOT NULL,
    family     TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_token_family ON refresh_token (family);

-- A client the configuration binds to one resource owner: its client_credentials tokens are PATs.
ALTER TABLE client ADD COLUMN bound_owner TEXT;

CREATE TABLE resource (
    resource_id  TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    rs_client_id TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    description  TEXT NOT NULL,                -- JSON: name, type, description, icon_uri, resource_scopes
    name         TEXT,
    type         TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX resource_owner_rs ON resource (owner, rs_client_id);

CREATE TABLE ticket (
    digest       TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    rs_client_id TEXT NOT NULL,
    permissions  TEXT NOT NULL,                -- JSON array of {resource_id, resource_scopes}
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX ticket_expiry ON ticket (expires_at);
