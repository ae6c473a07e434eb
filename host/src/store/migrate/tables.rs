//! What `migrate-db` copies: every table of the schema, in an order that writes a row after
//! the rows it refers to, with its columns and their kinds; and how a value of each kind
//! goes from SQLite to PostgreSQL.
//!
//! The two schemas are the same tables and columns (`postgres/migrations/001_initial.sql`
//! says so); they differ in types only: SQLite's STRICT `INTEGER`, `TEXT` and `BLOB` are
//! PostgreSQL's `BIGINT`, `TEXT` and `BYTEA`. A value crosses unchanged, bytes for bytes:
//! sealed credentials, the sealed data key and the CA's sealed key are never opened.
//! Both schemas are checked against these lists before anything is copied
//! ([`super::schema`]), so a column added to one backend and not here stops the copy rather
//! than being left behind.

use postgres::types::{ToSql, Type};
use rusqlite::Row;

/// A column's kind, the same on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// SQLite `INTEGER`, PostgreSQL `BIGINT`.
    Integer,
    /// `TEXT` on both.
    Text,
    /// SQLite `BLOB`, PostgreSQL `BYTEA`.
    Blob,
}

impl Kind {
    /// The type SQLite's STRICT tables declare.
    pub(super) fn sqlite_type(self) -> &'static str {
        match self {
            Kind::Integer => "INTEGER",
            Kind::Text => "TEXT",
            Kind::Blob => "BLOB",
        }
    }

    /// The type `information_schema.columns` names in PostgreSQL.
    pub(super) fn postgres_type(self) -> &'static str {
        match self {
            Kind::Integer => "bigint",
            Kind::Text => "text",
            Kind::Blob => "bytea",
        }
    }

    /// The type of the binary `COPY` stream.
    pub(super) fn copy_type(self) -> Type {
        match self {
            Kind::Integer => Type::INT8,
            Kind::Text => Type::TEXT,
            Kind::Blob => Type::BYTEA,
        }
    }
}

/// A table and its columns, in the order they are read and written.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [(&'static str, Kind)],
}

impl Table {
    /// The column names, comma-separated, for `SELECT` and `COPY`.
    pub(super) fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }
}

use Kind::{Blob, Integer, Text};

/// Every table, parents before the tables that refer to them.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "master_key",
        columns: &[
            ("id", Integer),
            ("key_version", Integer),
            ("mode", Text),
            ("salt", Blob),
            ("kdf_memory_kib", Integer),
            ("kdf_iterations", Integer),
            ("kdf_parallelism", Integer),
            ("wrap_nonce", Blob),
            ("wrapped_key", Blob),
            ("plain_key", Blob),
            ("updated_at", Integer),
        ],
    },
    Table {
        name: "instance_settings",
        columns: &[("key", Text), ("value", Text)],
    },
    Table {
        name: "vaults",
        columns: &[("id", Text), ("name", Text), ("created_at", Integer)],
    },
    Table {
        name: "vault_settings",
        columns: &[("vault_id", Text), ("key", Text), ("value", Text)],
    },
    Table {
        name: "credentials",
        columns: &[
            ("vault_id", Text),
            ("key", Text),
            ("key_version", Integer),
            ("nonce", Blob),
            ("ciphertext", Blob),
            ("updated_at", Integer),
        ],
    },
    Table {
        name: "services",
        columns: &[
            ("vault_id", Text),
            ("services_json", Text),
            ("updated_at", Integer),
        ],
    },
    Table {
        name: "users",
        columns: &[
            ("id", Text),
            ("email", Text),
            ("password_hash", Text),
            ("role", Text),
            ("created_at", Integer),
        ],
    },
    Table {
        name: "agents",
        columns: &[
            ("id", Text),
            ("name", Text),
            ("role", Text),
            ("status", Text),
            ("created_by_type", Text),
            ("created_by_id", Text),
            ("created_at", Integer),
            ("revoked_at", Integer),
        ],
    },
    Table {
        name: "vault_grants",
        columns: &[
            ("actor_type", Text),
            ("actor_id", Text),
            ("vault_id", Text),
            ("role", Text),
        ],
    },
    Table {
        name: "tokens",
        columns: &[
            ("hash", Text),
            ("public_id", Text),
            ("kind", Text),
            ("user_id", Text),
            ("agent_id", Text),
            ("vault_id", Text),
            ("vault_role", Text),
            ("label", Text),
            ("idle_seconds", Integer),
            ("created_by_type", Text),
            ("created_by_id", Text),
            ("created_at", Integer),
            ("last_used_at", Integer),
            ("expires_at", Integer),
        ],
    },
    Table {
        name: "device_tokens",
        columns: &[
            ("hash", Text),
            ("public_id", Text),
            ("user_id", Text),
            ("idle_seconds", Integer),
            ("created_at", Integer),
            ("last_used_at", Integer),
        ],
    },
    Table {
        name: "user_invites",
        columns: &[
            ("hash", Text),
            ("email", Text),
            ("role", Text),
            ("created_by_type", Text),
            ("created_by_id", Text),
            ("status", Text),
            ("created_at", Integer),
            ("expires_at", Integer),
        ],
    },
    Table {
        name: "user_invite_vaults",
        columns: &[("invite_hash", Text), ("vault_id", Text), ("role", Text)],
    },
    Table {
        name: "agent_invites",
        columns: &[
            ("hash", Text),
            ("agent_name", Text),
            ("role", Text),
            ("created_by_type", Text),
            ("created_by_id", Text),
            ("status", Text),
            ("created_at", Integer),
            ("expires_at", Integer),
            ("agent_id", Text),
            ("redeemed_at", Integer),
        ],
    },
    Table {
        name: "agent_invite_vaults",
        columns: &[("invite_hash", Text), ("vault_id", Text), ("role", Text)],
    },
    Table {
        name: "proposals",
        columns: &[
            ("vault_id", Text),
            ("id", Integer),
            ("status", Text),
            ("services_json", Text),
            ("credentials_json", Text),
            ("message", Text),
            ("user_message", Text),
            ("created_by_type", Text),
            ("created_by_id", Text),
            ("created_by_session", Text),
            ("approval_hash", Text),
            ("approval_expires_at", Integer),
            ("created_at", Integer),
            ("expires_at", Integer),
            ("reviewed_by_type", Text),
            ("reviewed_by_id", Text),
            ("reviewed_at", Integer),
            ("review_note", Text),
        ],
    },
    Table {
        name: "mitm_ca",
        columns: &[
            ("id", Integer),
            ("common_name", Text),
            ("cert_pem", Text),
            ("key_version", Integer),
            ("nonce", Blob),
            ("ciphertext", Blob),
            ("created_at", Integer),
        ],
    },
    Table {
        name: "request_logs",
        columns: &[
            ("id", Integer),
            ("vault_id", Text),
            ("ingress", Text),
            ("method", Text),
            ("host", Text),
            ("path", Text),
            ("matched_service", Text),
            ("credential_keys", Text),
            ("status", Integer),
            ("latency_ms", Integer),
            ("error_code", Text),
            ("actor_type", Text),
            ("actor_id", Text),
            ("created_at", Integer),
        ],
    },
];

/// One value read from SQLite, as PostgreSQL will get it; `None` is NULL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Value {
    /// Column `index` of a SQLite row, read as `kind`. The tables are STRICT, so a value of
    /// another type is not there to meet; text that is not UTF-8 (which SQLite can hold and
    /// PostgreSQL cannot) is an error naming the column.
    pub(super) fn read(kind: Kind, row: &Row<'_>, index: usize) -> rusqlite::Result<Value> {
        Ok(match kind {
            Kind::Integer => Value::Integer(row.get(index)?),
            Kind::Text => Value::Text(row.get(index)?),
            Kind::Blob => Value::Blob(row.get(index)?),
        })
    }

    /// The value as a parameter of the binary `COPY`.
    pub(super) fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Integer(value) => value,
            Value::Text(value) => value,
            Value::Blob(value) => value,
        }
    }
}
