//! How a transaction of [`super::SqliteStore`] fails, and how that failure reads: a
//! [`Failure`] is one of the store's rules ([`StoreError`]) or SQLite's own error;
//! [`Constraint`] turns SQLite's constraint failures into the store's errors; [`describe`]
//! writes the message a SQLite error ends up with, and [`is_temporary`] says whether it passes
//! by itself.

use rusqlite::{ErrorCode, ffi};

use super::BUSY_TIMEOUT;
use crate::store::StoreError;

/// An error inside a transaction: one of the store's rules, or SQLite's own error.
pub(super) enum Failure {
    Store(StoreError),
    Sql(rusqlite::Error),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sql(error)
    }
}

pub(super) type TxResult<T> = std::result::Result<T, Failure>;

/// Constraint failures turned into the store's errors, by SQLite's extended result code.
pub(super) trait Constraint<T> {
    /// A UNIQUE or PRIMARY KEY collision becomes `Conflict(what)`.
    fn on_unique(self, what: &str) -> TxResult<T>;
    /// A row referring to a missing parent (a foreign key) becomes `NotFound(what)`.
    fn on_missing(self, what: &str) -> TxResult<T>;
}

impl<T, E: Into<Failure>> Constraint<T> for std::result::Result<T, E> {
    fn on_unique(self, what: &str) -> TxResult<T> {
        self.map_err(|error| match error.into() {
            Failure::Sql(error)
                if matches!(
                    constraint_code(&error),
                    Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
                ) =>
            {
                Failure::Store(StoreError::Conflict(what.to_owned()))
            }
            other => other,
        })
    }

    fn on_missing(self, what: &str) -> TxResult<T> {
        self.map_err(|error| match error.into() {
            Failure::Sql(error)
                if constraint_code(&error) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) =>
            {
                Failure::Store(StoreError::NotFound(what.to_owned()))
            }
            other => other,
        })
    }
}

fn constraint_code(error: &rusqlite::Error) -> Option<i32> {
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::ConstraintViolation =>
        {
            Some(failure.extended_code)
        }
        _ => None,
    }
}

/// A message for a SQLite error. SQLite's messages name tables, columns and constraints,
/// never bound values; the conversions below drop the value that failed.
pub(super) fn describe(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let detail = message.clone().unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => format!(
                    "{detail}: another process kept the database busy for more than {} s; try again",
                    BUSY_TIMEOUT.as_secs()
                ),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    format!("{detail}: the database file is damaged; restore it from a backup")
                }
                ErrorCode::DiskFull => format!("{detail}: free some disk space and try again"),
                _ => detail,
            }
        }
        rusqlite::Error::FromSqlConversionFailure(column, _, cause) => {
            format!("column {column} holds an unreadable value: {cause}")
        }
        rusqlite::Error::IntegralValueOutOfRange(column, _) => {
            format!("column {column} holds an out-of-range integer")
        }
        other => other.to_string(),
    }
}

/// Whether `error` passes by itself: the write lock held elsewhere past the busy timeout,
/// or a full disk.
pub(super) fn is_temporary(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull)
    )
}

/// A caller broke the contract of a trait method (a programming error, not the user's).
pub(super) fn misuse(message: &str) -> Failure {
    Failure::Store(StoreError::Database(message.to_owned()))
}
