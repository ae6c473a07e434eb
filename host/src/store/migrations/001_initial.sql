-- The initial schema. Times are Unix seconds (UTC). Tokens are stored only as SHA-256 hex;
-- credential values only sealed (AES-256-GCM, bound to vault id, key and key version).
-- Tables are STRICT: a value of the wrong type is an error, not a silent conversion.

CREATE TABLE master_key (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    key_version     INTEGER NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('password', 'passwordless')),
    salt            BLOB,
    kdf_memory_kib  INTEGER,
    kdf_iterations  INTEGER,
    kdf_parallelism INTEGER,
    wrap_nonce      BLOB,
    wrapped_key     BLOB,
    plain_key       BLOB,
    updated_at      INTEGER NOT NULL,
    CHECK ((mode = 'password'
            AND salt IS NOT NULL AND kdf_memory_kib IS NOT NULL AND kdf_iterations IS NOT NULL
            AND kdf_parallelism IS NOT NULL AND wrap_nonce IS NOT NULL AND wrapped_key IS NOT NULL
            AND plain_key IS NULL)
        OR (mode = 'passwordless'
            AND plain_key IS NOT NULL
            AND salt IS NULL AND kdf_memory_kib IS NULL AND kdf_iterations IS NULL
            AND kdf_parallelism IS NULL AND wrap_nonce IS NULL AND wrapped_key IS NULL))
) STRICT;

CREATE TABLE vaults (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

INSERT INTO vaults (id, name, created_at)
VALUES ('00000000000000000000000000000000', 'default', CAST(strftime('%s', 'now') AS INTEGER));

CREATE TABLE vault_settings (
    vault_id TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (vault_id, key)
) STRICT;

CREATE TABLE credentials (
    vault_id    TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (vault_id, key)
) STRICT;

CREATE TABLE services (
    vault_id      TEXT PRIMARY KEY REFERENCES vaults (id) ON DELETE CASCADE,
    services_json TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    -- Callers lower-case emails; NOCASE keeps two spellings of one address from coexisting.
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    status          TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_by_type TEXT CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
) STRICT;

CREATE TABLE vault_grants (
    actor_type TEXT NOT NULL CHECK (actor_type IN ('user', 'agent')),
    actor_id   TEXT NOT NULL,
    vault_id   TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member', 'proxy')),
    PRIMARY KEY (actor_type, actor_id, vault_id)
) STRICT;

CREATE INDEX vault_grants_by_vault ON vault_grants (vault_id);

CREATE TABLE tokens (
    hash            TEXT PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('login', 'agent', 'scoped')),
    user_id         TEXT REFERENCES users (id) ON DELETE CASCADE,
    agent_id        TEXT REFERENCES agents (id) ON DELETE CASCADE,
    vault_id        TEXT REFERENCES vaults (id) ON DELETE CASCADE,
    vault_role      TEXT CHECK (vault_role IN ('admin', 'member', 'proxy')),
    label           TEXT,
    idle_seconds    INTEGER,
    created_by_type TEXT CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    expires_at      INTEGER,
    -- Exactly the columns of its kind are set, so a token cannot belong to two owners.
    CHECK ((kind = 'login' AND user_id IS NOT NULL AND idle_seconds IS NOT NULL
            AND agent_id IS NULL AND vault_id IS NULL AND vault_role IS NULL AND label IS NULL)
        OR (kind = 'agent' AND agent_id IS NOT NULL
            AND user_id IS NULL AND vault_id IS NULL AND vault_role IS NULL AND label IS NULL
            AND idle_seconds IS NULL)
        OR (kind = 'scoped' AND vault_id IS NOT NULL AND vault_role IS NOT NULL
            AND label IS NOT NULL
            AND user_id IS NULL AND agent_id IS NULL AND idle_seconds IS NULL))
) STRICT;

CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_agent ON tokens (agent_id);
CREATE INDEX tokens_by_vault ON tokens (vault_id);
CREATE INDEX tokens_by_creator ON tokens (created_by_type, created_by_id);

CREATE TABLE user_invites (
    hash            TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    created_by_type TEXT CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'revoked')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;

-- The vaults an invite will grant. A table rather than a JSON column so that deleting a vault
-- also takes it out of pending invites, instead of leaving an id that breaks the acceptance.
CREATE TABLE user_invite_vaults (
    invite_hash TEXT NOT NULL REFERENCES user_invites (hash) ON DELETE CASCADE,
    vault_id    TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member', 'proxy')),
    PRIMARY KEY (invite_hash, vault_id)
) STRICT;

CREATE INDEX user_invite_vaults_by_vault ON user_invite_vaults (vault_id);

CREATE TABLE request_logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    vault_id        TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    ingress         TEXT NOT NULL,
    method          TEXT NOT NULL,
    host            TEXT NOT NULL,
    path            TEXT NOT NULL,
    matched_service TEXT,
    -- A JSON array of key names.
    credential_keys TEXT NOT NULL,
    status          INTEGER NOT NULL,
    latency_ms      INTEGER NOT NULL,
    error_code      TEXT,
    actor_type      TEXT CHECK (actor_type IN ('user', 'agent')),
    actor_id        TEXT,
    created_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX request_logs_by_vault ON request_logs (vault_id, id);
CREATE INDEX request_logs_by_time ON request_logs (created_at);
