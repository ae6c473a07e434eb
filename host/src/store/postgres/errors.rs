//! How a transaction of [`super::PostgresStore`] fails, and how that failure reads: a
//! [`Failure`] is one of the store's rules ([`StoreError`]), PostgreSQL's own error, or a
//! stored value this agent-vault cannot read; [`Constraint`] turns constraint violations into
//! the store's errors (with the messages of the SQLite backend); [`describe`] writes the
//! message an error ends up with, and [`is_retryable`] and [`is_unavailable`] sort errors into
//! those the transaction runs again after, those that pass by themselves, and the rest.
//!
//! Messages carry PostgreSQL's primary message only: its DETAIL of a unique violation quotes
//! the colliding values (an email, a token's hash), which must not reach a log or a response.

use postgres::error::SqlState;

use crate::store::StoreError;

/// An error inside a transaction.
pub(super) enum Failure {
    Store(StoreError),
    Sql(postgres::Error),
    /// A unique violation, `Conflict(what)` to the caller. At `SERIALIZABLE` it can also mean
    /// that a concurrent transaction inserted the same key after this one began, and that
    /// this one, run again, would decide otherwise (find the invite redeemed, say): so the
    /// transaction runs once more before it is reported (`PostgresStore::transaction`).
    Unique(String),
    /// A stored value that does not fit its Rust type (an unknown role, an out-of-range
    /// number); the message names the column, never the value.
    Data(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Sql(error)
    }
}

pub(super) type TxResult<T> = std::result::Result<T, Failure>;

/// Constraint violations turned into the store's errors, by SQLSTATE.
pub(super) trait Constraint<T> {
    /// A UNIQUE or PRIMARY KEY collision becomes `Conflict(what)`.
    fn on_unique(self, what: &str) -> TxResult<T>;
    /// A row referring to a missing parent (a foreign key) becomes `NotFound(what)`.
    fn on_missing(self, what: &str) -> TxResult<T>;
}

impl<T, E: Into<Failure>> Constraint<T> for std::result::Result<T, E> {
    fn on_unique(self, what: &str) -> TxResult<T> {
        self.map_err(|error| match error.into() {
            Failure::Sql(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Failure::Unique(what.to_owned())
            }
            other => other,
        })
    }

    fn on_missing(self, what: &str) -> TxResult<T> {
        self.map_err(|error| match error.into() {
            Failure::Sql(error) if error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Failure::Store(StoreError::NotFound(what.to_owned()))
            }
            other => other,
        })
    }
}

/// Whether the transaction lost a race with another and may simply run again: a
/// serialization failure or a deadlock. PostgreSQL rolled it back; nothing of it was written.
pub(super) fn is_retryable(error: &postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Whether `error` says the database cannot take the operation now but may later: no
/// connection (refused, lost, closed by the server), the server shutting down or starting,
/// out of connections or disk, a read-only server (a standby, during a failover), or a lock
/// another session held past the lock timeout (`open.rs`).
pub(super) fn is_unavailable(error: &postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // shutting down, cannot connect now
                || code == SqlState::READ_ONLY_SQL_TRANSACTION.code()
                || code == SqlState::LOCK_NOT_AVAILABLE.code()
        }
        None => is_connection_failure(error),
    }
}

/// A connection closed, or one the network failed: not one whose server certificate TLS
/// refused, which is the configuration's fault and does not pass by itself.
fn is_connection_failure(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(io) =
        std::error::Error::source(error).and_then(|cause| cause.downcast_ref::<std::io::Error>())
    else {
        return false;
    };
    !io.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

/// A message for a PostgreSQL error: the server's primary message (which names tables,
/// columns and constraints, never the values) or the client's own.
pub(super) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        // The client's own: what failed ("error connecting to server") and why, each cause
        // once.
        None => {
            let mut message = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(reason) = cause {
                let reason_text = reason.to_string();
                if !message.contains(&reason_text) {
                    message = format!("{message}: {reason_text}");
                }
                cause = reason.source();
            }
            message
        }
    }
}

/// A caller broke the contract of a trait method (a programming error, not the user's).
pub(super) fn misuse(message: &str) -> Failure {
    Failure::Store(StoreError::Database(message.to_owned()))
}

/// The store's error for a failed transaction of `operation`.
pub(super) fn into_store_error(operation: &str, failure: Failure) -> StoreError {
    match failure {
        Failure::Store(error) => error,
        Failure::Unique(what) => StoreError::Conflict(what),
        Failure::Data(message) => StoreError::Database(format!("cannot {operation}: {message}")),
        Failure::Sql(error) => {
            let message = format!("cannot {operation}: {}", describe(&error));
            if is_unavailable(&error) || is_retryable(&error) {
                StoreError::Unavailable(message)
            } else {
                StoreError::Database(message)
            }
        }
    }
}
