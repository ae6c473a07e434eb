-- Agent invites: a one-time link an agent redeems itself for its own agent token, with the
-- agent's name, role and vault grants fixed by whoever invited it. Stored only as SHA-256.

CREATE TABLE agent_invites (
    hash            TEXT PRIMARY KEY,
    agent_name      TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'member', 'no-access')),
    created_by_type TEXT CHECK (created_by_type IN ('user', 'agent')),
    created_by_id   TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'redeemed', 'revoked')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    -- Set when redeemed: the agent it created (NULL again if that agent is deleted).
    agent_id        TEXT REFERENCES agents (id) ON DELETE SET NULL,
    redeemed_at     INTEGER,
    CHECK ((status = 'redeemed') = (redeemed_at IS NOT NULL))
) STRICT;

CREATE INDEX agent_invites_by_name ON agent_invites (agent_name);

-- As user_invite_vaults: deleting a vault takes it out of pending invites.
CREATE TABLE agent_invite_vaults (
    invite_hash TEXT NOT NULL REFERENCES agent_invites (hash) ON DELETE CASCADE,
    vault_id    TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member', 'proxy')),
    PRIMARY KEY (invite_hash, vault_id)
) STRICT;

CREATE INDEX agent_invite_vaults_by_vault ON agent_invite_vaults (vault_id);
