-- The whole schema of agent-vault on PostgreSQL, equal to SQLite's after its nine migrations
-- (host/src/store/migrations/001 to 009): a new PostgreSQL database has no history to replay,
-- so it starts at that schema in one step. Later changes get the next number here, as in
-- SQLite's folder.
--
-- Times are Unix seconds (UTC) as BIGINT; binary values BYTEA. Tokens are stored only as
-- SHA-256 hex; credential values only sealed (AES-256-GCM, bound to vault id, key and key
-- version). Every text column collates as "C", byte order like SQLite's BINARY, so that lists
-- come out in the same order whatever the database's locale. The CHECK constraints are
-- SQLite's. One table differs, for servers sharing the database: request_log_journal.

CREATE TABLE master_key (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    key_version     BIGINT NOT NULL,
    mode            TEXT COLLATE "C" NOT NULL CHECK (mode IN ('password', 'passwordless')),
    salt            BYTEA,
    kdf_memory_kib  BIGINT,
    kdf_iterations  BIGINT,
    kdf_parallelism BIGINT,
    wrap_nonce      BYTEA,
    wrapped_key     BYTEA,
    plain_key       BYTEA,
    updated_at      BIGINT NOT NULL,
    CHECK ((mode = 'password'
            AND salt IS NOT NULL AND kdf_memory_kib IS NOT NULL AND kdf_iterations IS NOT NULL
            AND kdf_parallelism IS NOT NULL AND wrap_nonce IS NOT NULL AND wrapped_key IS NOT NULL
            AND plain_key IS NULL)
        OR (mode = 'passwordless'
            AND plain_key IS NOT NULL
            AND salt IS NULL AND kdf_memory_kib IS NULL AND kdf_iterations IS NULL
            AND kdf_parallelism IS NULL AND wrap_nonce IS NULL AND wrapped_key IS NULL))
);

CREATE TABLE vaults (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

INSERT INTO vaults (id, name, created_at)
VALUES ('00000000000000000000000000000000', 'default', EXTRACT(EPOCH FROM now())::BIGINT);

CREATE TABLE vault_settings (
    vault_id TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    key      TEXT COLLATE "C" NOT NULL,
    value    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (vault_id, key)
);

CREATE TABLE instance_settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

CREATE TABLE credentials (
    vault_id    TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    key         TEXT COLLATE "C" NOT NULL,
    key_version BIGINT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (vault_id, key)
);

CREATE TABLE services (
    vault_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES vaults (id) ON DELETE CASCADE,
    services_json TEXT COLLATE "C" NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    email         TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C" NOT NULL,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    created_at    BIGINT NOT NULL
);

-- SQLite's `UNIQUE COLLATE NOCASE`: callers lower-case emails, and two spellings of one
-- address cannot coexist. lower() under the "C" collation folds ASCII letters only, as NOCASE
-- does; lookups compare lower(email) too.
CREATE UNIQUE INDEX users_by_email ON users (lower(email));

CREATE TABLE agents (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL UNIQUE,
    role            TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'revoked')),
    created_by_type TEXT COLLATE "C" CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);

CREATE TABLE vault_grants (
    actor_type TEXT COLLATE "C" NOT NULL CHECK (actor_type IN ('user', 'agent')),
    actor_id   TEXT COLLATE "C" NOT NULL,
    vault_id   TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role       TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'member', 'proxy')),
    PRIMARY KEY (actor_type, actor_id, vault_id)
);

CREATE INDEX vault_grants_by_vault ON vault_grants (vault_id);

CREATE TABLE tokens (
    hash            TEXT COLLATE "C" PRIMARY KEY,
    public_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    kind            TEXT COLLATE "C" NOT NULL CHECK (kind IN ('login', 'agent', 'scoped')),
    user_id         TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    agent_id        TEXT COLLATE "C" REFERENCES agents (id) ON DELETE CASCADE,
    vault_id        TEXT COLLATE "C" REFERENCES vaults (id) ON DELETE CASCADE,
    vault_role      TEXT COLLATE "C" CHECK (vault_role IN ('admin', 'member', 'proxy')),
    label           TEXT COLLATE "C",
    idle_seconds    BIGINT,
    created_by_type TEXT COLLATE "C" CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT NOT NULL,
    expires_at      BIGINT,
    -- Exactly the columns of its kind are set, so a token cannot belong to two owners.
    CHECK ((kind = 'login' AND user_id IS NOT NULL AND idle_seconds IS NOT NULL
            AND agent_id IS NULL AND vault_id IS NULL AND vault_role IS NULL AND label IS NULL)
        OR (kind = 'agent' AND agent_id IS NOT NULL
            AND user_id IS NULL AND vault_id IS NULL AND vault_role IS NULL AND label IS NULL
            AND idle_seconds IS NULL)
        OR (kind = 'scoped' AND vault_id IS NOT NULL AND vault_role IS NOT NULL
            AND label IS NOT NULL
            AND user_id IS NULL AND agent_id IS NULL AND idle_seconds IS NULL))
);

CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_agent ON tokens (agent_id);
CREATE INDEX tokens_by_vault ON tokens (vault_id);
CREATE INDEX tokens_by_creator ON tokens (created_by_type, created_by_id);

CREATE TABLE device_tokens (
    hash         TEXT COLLATE "C" PRIMARY KEY,
    public_id    TEXT COLLATE "C" NOT NULL UNIQUE,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idle_seconds BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
);

CREATE INDEX device_tokens_by_user ON device_tokens (user_id, last_used_at);

CREATE TABLE user_invites (
    hash            TEXT COLLATE "C" PRIMARY KEY,
    email           TEXT COLLATE "C" NOT NULL,
    role            TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    created_by_type TEXT COLLATE "C" CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending', 'accepted', 'revoked')),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);

CREATE TABLE user_invite_vaults (
    invite_hash TEXT COLLATE "C" NOT NULL REFERENCES user_invites (hash) ON DELETE CASCADE,
    vault_id    TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role        TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'member', 'proxy')),
    PRIMARY KEY (invite_hash, vault_id)
);

CREATE INDEX user_invite_vaults_by_vault ON user_invite_vaults (vault_id);

CREATE TABLE agent_invites (
    hash            TEXT COLLATE "C" PRIMARY KEY,
    agent_name      TEXT COLLATE "C" NOT NULL,
    role            TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    created_by_type TEXT COLLATE "C" CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending', 'redeemed', 'revoked')),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    -- Set when redeemed: the agent it created (NULL again if that agent is deleted).
    agent_id        TEXT COLLATE "C" REFERENCES agents (id) ON DELETE SET NULL,
    redeemed_at     BIGINT,
    CHECK ((status = 'redeemed') = (redeemed_at IS NOT NULL))
);

CREATE INDEX agent_invites_by_name ON agent_invites (agent_name);

CREATE TABLE agent_invite_vaults (
    invite_hash TEXT COLLATE "C" NOT NULL REFERENCES agent_invites (hash) ON DELETE CASCADE,
    vault_id    TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role        TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'member', 'proxy')),
    PRIMARY KEY (invite_hash, vault_id)
);

CREATE INDEX agent_invite_vaults_by_vault ON agent_invite_vaults (vault_id);

CREATE TABLE proposals (
    vault_id            TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    id                  BIGINT NOT NULL CHECK (id > 0),
    status              TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending', 'applied', 'rejected')),
    services_json       TEXT COLLATE "C" NOT NULL,
    credentials_json    TEXT COLLATE "C" NOT NULL,
    message             TEXT COLLATE "C" NOT NULL,
    user_message        TEXT COLLATE "C" NOT NULL,
    created_by_type     TEXT COLLATE "C" CHECK (created_by_type IN ('user', 'agent')),
    created_by_id       TEXT COLLATE "C",
    created_by_session  TEXT COLLATE "C",
    approval_hash       TEXT COLLATE "C" NOT NULL UNIQUE,
    approval_expires_at BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    reviewed_by_type    TEXT COLLATE "C" CHECK (reviewed_by_type IN ('user', 'agent')),
    reviewed_by_id      TEXT COLLATE "C",
    reviewed_at         BIGINT,
    review_note         TEXT COLLATE "C",
    PRIMARY KEY (vault_id, id),
    CHECK ((status = 'pending') = (reviewed_at IS NULL))
);

CREATE INDEX proposals_by_status ON proposals (vault_id, status);

CREATE TABLE mitm_ca (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    common_name TEXT COLLATE "C" NOT NULL,
    cert_pem    TEXT COLLATE "C" NOT NULL,
    key_version BIGINT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Ids from a sequence never come back, as SQLite's AUTOINCREMENT.
CREATE TABLE request_logs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vault_id        TEXT COLLATE "C" NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    ingress         TEXT COLLATE "C" NOT NULL,
    method          TEXT COLLATE "C" NOT NULL,
    host            TEXT COLLATE "C" NOT NULL,
    path            TEXT COLLATE "C" NOT NULL,
    matched_service TEXT COLLATE "C",
    -- A JSON array of key names, as in SQLite.
    credential_keys TEXT COLLATE "C" NOT NULL,
    status          BIGINT NOT NULL,
    latency_ms      BIGINT NOT NULL,
    error_code      TEXT COLLATE "C",
    actor_type      TEXT COLLATE "C" CHECK (actor_type IN ('user', 'agent')),
    actor_id        TEXT COLLATE "C",
    created_at      BIGINT NOT NULL
);

CREATE INDEX request_logs_by_vault ON request_logs (vault_id, id);

-- Where each server's request-log journal stands (host/src/request_log/journal.rs): the
-- highest of its numbers whose entry is in request_logs. Unlike SQLite's one row, one row per
-- journal: servers sharing this database number their journals each on its own, and one
-- server's mark must not tell another's restart that its unwritten entries are written.
CREATE TABLE request_log_journal (
    journal TEXT COLLATE "C" PRIMARY KEY,
    through BIGINT NOT NULL
);
