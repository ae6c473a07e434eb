//! Users in PostgreSQL: the `users` table. [`UserStore`] for [`PostgresStore`] is at the end of
//! this file: each method names its operation (for the error message) and runs these functions in
//! one transaction.
//!
//! As in SQLite (`sqlite/users.rs`): the first owner can be created once, while no owner
//! exists, and administers the default vault; demoting or deleting the last owner is refused,
//! and so is deleting the last admin of a vault ([`super::roles`]). Emails compare without
//! ASCII case, as SQLite's `COLLATE NOCASE` column does (`lower(email)`, which the unique
//! index covers).

use postgres::Row;

use super::Tx;

use super::PostgresStore;
use super::errors::{Constraint, TxResult};
use super::grants::insert_grant;
use super::roles::{keep_an_owner, keep_vault_admins, owner_count};
use super::{DEFAULT_VAULT_ID, column, devices, invite_rules, query_all, query_opt, text_enum};
use crate::store::{ActorId, InstanceRole, Result, StoreError, User, UserStore, VaultRole};

const USER_COLUMNS: &str = "id, email, role, password_hash, created_at";

fn user_row(row: &Row) -> TxResult<User> {
    Ok(User {
        id: column(row, 0)?,
        email: column(row, 1)?,
        role: text_enum(row, 2)?,
        password_hash: column(row, 3)?,
        created_at: column(row, 4)?,
    })
}

pub(super) fn insert_user(tx: &mut Tx<'_>, user: &User, role: InstanceRole) -> TxResult<()> {
    tx.execute(
        "INSERT INTO users (id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            &user.id,
            &user.email,
            &user.password_hash,
            &role.as_str(),
            &user.created_at,
        ],
    )
    .on_unique("a user with this email")?;
    Ok(())
}

pub(super) fn has_owner(tx: &mut Tx<'_>) -> TxResult<bool> {
    Ok(owner_count(tx)? > 0)
}

pub(super) fn create_first_owner(tx: &mut Tx<'_>, user: &User) -> TxResult<()> {
    if owner_count(tx)? > 0 {
        return Err(StoreError::Conflict("an owner".into()).into());
    }
    // Whatever `user.role` says: this method makes the owner.
    insert_user(tx, user, InstanceRole::Owner)?;
    insert_grant(
        tx,
        &ActorId::user(&user.id),
        DEFAULT_VAULT_ID,
        VaultRole::Admin,
    )
}

pub(super) fn get(tx: &mut Tx<'_>, id: &str) -> TxResult<Option<User>> {
    query_opt(
        tx,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
        &[&id],
        user_row,
    )
}

pub(super) fn by_email(tx: &mut Tx<'_>, email: &str) -> TxResult<Option<User>> {
    query_opt(
        tx,
        &format!(
            "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1::TEXT COLLATE \"C\")"
        ),
        &[&email],
        user_row,
    )
}

pub(super) fn list(tx: &mut Tx<'_>) -> TxResult<Vec<User>> {
    query_all(
        tx,
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY lower(email), email"),
        &[],
        user_row,
    )
}

fn role_of(tx: &mut Tx<'_>, id: &str) -> TxResult<InstanceRole> {
    query_opt(tx, "SELECT role FROM users WHERE id = $1", &[&id], |row| {
        text_enum(row, 0)
    })?
    .ok_or_else(|| StoreError::NotFound("user".into()).into())
}

pub(super) fn set_role(tx: &mut Tx<'_>, id: &str, role: InstanceRole) -> TxResult<()> {
    let current = role_of(tx, id)?;
    keep_an_owner(
        tx,
        current == InstanceRole::Owner && role != InstanceRole::Owner,
    )?;
    tx.execute(
        "UPDATE users SET role = $1 WHERE id = $2",
        &[&role.as_str(), &id],
    )?;
    Ok(())
}

pub(super) fn set_password(tx: &mut Tx<'_>, id: &str, password_hash: &str) -> TxResult<()> {
    if tx.execute(
        "UPDATE users SET password_hash = $1 WHERE id = $2",
        &[&password_hash, &id],
    )? == 0
    {
        return Err(StoreError::NotFound("user".into()).into());
    }
    tx.execute(
        "DELETE FROM tokens WHERE kind = 'login' AND user_id = $1",
        &[&id],
    )?;
    devices::delete_of_user(tx, id)?;
    Ok(())
}

pub(super) fn delete(tx: &mut Tx<'_>, id: &str) -> TxResult<()> {
    let role = role_of(tx, id)?;
    keep_an_owner(tx, role == InstanceRole::Owner)?;
    keep_vault_admins(tx, &ActorId::user(id))?;
    invite_rules::revoke_created_by(tx, &ActorId::user(id))?;
    tx.execute(
        "DELETE FROM vault_grants WHERE actor_type = 'user' AND actor_id = $1",
        &[&id],
    )?;
    tx.execute(
        "DELETE FROM tokens
         WHERE user_id = $1 OR (created_by_type = 'user' AND created_by_id = $1)",
        &[&id],
    )?;
    devices::delete_of_user(tx, id)?;
    tx.execute("DELETE FROM users WHERE id = $1", &[&id])?;
    Ok(())
}

impl UserStore for PostgresStore {
    fn has_owner(&self) -> Result<bool> {
        self.read("look for an owner", has_owner)
    }

    fn create_first_owner(&self, user: &User) -> Result<()> {
        self.write("create the first owner", |tx| create_first_owner(tx, user))
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.read("read the user", |tx| get(tx, id))
    }

    fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.read("read the user", |tx| by_email(tx, email))
    }

    fn users(&self) -> Result<Vec<User>> {
        self.read("list the users", list)
    }

    fn set_user_role(&self, id: &str, role: InstanceRole) -> Result<()> {
        self.write("change the user's role", |tx| set_role(tx, id, role))
    }

    fn set_user_password(&self, id: &str, password_hash: &str) -> Result<()> {
        self.write("change the user's password", |tx| {
            set_password(tx, id, password_hash)
        })
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        self.write("delete the user", |tx| delete(tx, id))
    }
}
