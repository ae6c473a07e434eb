-- The transparent proxy's local certificate authority: its certificate, and its private key
-- sealed under the data key like a credential. One per instance.

CREATE TABLE mitm_ca (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    common_name TEXT NOT NULL,
    cert_pem    TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
