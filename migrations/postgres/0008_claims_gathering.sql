-- Interactive claims gathering (UMA Grant §3.3.2–3.3.3). One row per visit of the claims interaction
-- endpoint: the ticket presented there is spent, and what it held waits here until the person has
-- signed in. The row is bound to the browser that started it (`binding`, a private cookie's digest)
-- and every form carries a CSRF token (`csrf`, a digest). Any node can continue the flow.
CREATE TABLE claims_session (
    session_id    TEXT PRIMARY KEY,            -- random, shown in the page's forms
    binding       TEXT NOT NULL,               -- digest of the browser-binding cookie
    csrf          TEXT NOT NULL,               -- digest of the forms' CSRF token
    client_id     TEXT NOT NULL REFERENCES client (client_id) ON DELETE CASCADE,
    redirect_uri  TEXT NOT NULL,               -- the checked claims_redirect_uri
    client_state  TEXT,                        -- the client's `state`, returned as sent
    owner         TEXT NOT NULL,               -- the spent ticket's contents
    rs_client_id  TEXT NOT NULL,
    permissions   TEXT NOT NULL,
    carried       TEXT,
    pending_id    TEXT,
    provider      TEXT,                        -- the OpenID provider chosen (verifier id)
    oidc_state    TEXT,                        -- digest of the `state` sent to that provider
    oidc_nonce    TEXT,
    pkce_verifier TEXT,
    failures      BIGINT NOT NULL DEFAULT 0,   -- failed local-account sign-ins
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE UNIQUE INDEX claims_session_oidc_state ON claims_session (oidc_state);
