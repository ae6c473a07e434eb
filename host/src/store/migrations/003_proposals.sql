-- Proposals: an agent asks for services and credential slots; a human approves (typing the
-- credential values) or rejects. Ids count up per vault. The approval link's token is stored
-- only as SHA-256. Proposed services and slots are JSON as the agent sent them, validated;
-- they never hold a credential value.

CREATE TABLE proposals (
    vault_id            TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
    id                  INTEGER NOT NULL CHECK (id > 0),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'rejected')),
    services_json       TEXT NOT NULL,
    credentials_json    TEXT NOT NULL,
    message             TEXT NOT NULL,
    user_message        TEXT NOT NULL,
    created_by_type     TEXT CHECK (created_by_type IN ('user', 'agent')),
    created_by_id       TEXT,
    -- The public id of the vault session that proposed, when no user or agent did.
    created_by_session  TEXT,
    approval_hash       TEXT NOT NULL UNIQUE,
    approval_expires_at INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    reviewed_by_type    TEXT CHECK (reviewed_by_type IN ('user', 'agent')),
    reviewed_by_id      TEXT,
    reviewed_at         INTEGER,
    review_note         TEXT,
    PRIMARY KEY (vault_id, id),
    CHECK ((status = 'pending') = (reviewed_at IS NULL))
) STRICT;

CREATE INDEX proposals_by_status ON proposals (vault_id, status);
