-- Failed sign-ins on a pending authorization request: after a few the request is dropped, so one
-- request handle cannot carry an unlimited password-guessing run.
ALTER TABLE authorization_request ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
