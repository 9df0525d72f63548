-- Signing keys live in the store so that restarts and every node sign with, and publish, the same keys.
-- Times are epoch seconds (BIGINT) on both backends; the application passes `now` in.
CREATE TABLE signing_key (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    -- 1, 2, 3 … per algorithm; the unique pair makes a concurrent first start or rotation
    -- insert at most one key per generation.
    generation   BIGINT NOT NULL,
    private_pem  TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT,
    UNIQUE (alg, generation)
);
