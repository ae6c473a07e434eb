-- Device tokens: what a client that signed in to an account before holds, so that its next
-- sign-ins count apart from everyone else's failures at that account (ratelimit/sign_in.rs).
-- Only the token's SHA-256 is kept. A device token is no login: it authenticates nothing
-- and is never looked up where a bearer token is. It ends after `idle_seconds` without a
-- sign-in, when the user changes their password, and with the user.

CREATE TABLE device_tokens (
    hash         TEXT PRIMARY KEY,
    public_id    TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idle_seconds INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
) STRICT;

CREATE INDEX device_tokens_by_user ON device_tokens (user_id, last_used_at);
