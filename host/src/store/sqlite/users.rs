//! Users in SQLite: the `users` table. [`UserStore`] for [`SqliteStore`] is at the end of this
//! file: each method names its operation (for the error message) and runs these functions in one
//! transaction.
//!
//! The first owner can be created once, while no owner exists, and administers the default
//! vault. Demoting or deleting the last owner is refused, and so is deleting the last admin
//! of a vault ([`super::roles`]). A new password ends the user's login sessions and device
//! tokens; deleting a user takes their grants and tokens with them and revokes the agent
//! invites they created.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult};
use super::grants::insert_grant;
use super::roles::{keep_an_owner, keep_vault_admins, owner_count};
use super::{DEFAULT_VAULT_ID, devices, invite_rules, query_all, text_enum};
use crate::store::{ActorId, InstanceRole, Result, StoreError, User, UserStore, VaultRole};

const USER_COLUMNS: &str = "id, email, role, password_hash, created_at";

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        role: text_enum(row, 2)?,
        password_hash: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub(super) fn insert_user(tx: &Transaction<'_>, user: &User, role: InstanceRole) -> TxResult<()> {
    tx.execute(
        "INSERT INTO users (id, email, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user.id, user.email, user.password_hash, role.as_str(), user.created_at],
    )
    .on_unique("a user with this email")?;
    Ok(())
}

pub(super) fn has_owner(tx: &Transaction<'_>) -> TxResult<bool> {
    Ok(owner_count(tx)? > 0)
}

pub(super) fn create_first_owner(tx: &Transaction<'_>, user: &User) -> TxResult<()> {
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

pub(super) fn get(tx: &Transaction<'_>, id: &str) -> TxResult<Option<User>> {
    Ok(tx
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )
        .optional()?)
}

pub(super) fn by_email(tx: &Transaction<'_>, email: &str) -> TxResult<Option<User>> {
    Ok(tx
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
            [email],
            user_row,
        )
        .optional()?)
}

pub(super) fn list(tx: &Transaction<'_>) -> TxResult<Vec<User>> {
    query_all(
        tx,
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"),
        [],
        user_row,
    )
}

pub(super) fn set_role(tx: &Transaction<'_>, id: &str, role: InstanceRole) -> TxResult<()> {
    let current: InstanceRole = tx
        .query_row("SELECT role FROM users WHERE id = ?1", [id], |row| {
            text_enum(row, 0)
        })
        .optional()?
        .ok_or(StoreError::NotFound("user".into()))?;
    keep_an_owner(
        tx,
        current == InstanceRole::Owner && role != InstanceRole::Owner,
    )?;
    tx.execute(
        "UPDATE users SET role = ?1 WHERE id = ?2",
        [role.as_str(), id],
    )?;
    Ok(())
}

pub(super) fn set_password(tx: &Transaction<'_>, id: &str, password_hash: &str) -> TxResult<()> {
    if tx.execute(
        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
        [password_hash, id],
    )? == 0
    {
        return Err(StoreError::NotFound("user".into()).into());
    }
    tx.execute(
        "DELETE FROM tokens WHERE kind = 'login' AND user_id = ?1",
        [id],
    )?;
    devices::delete_of_user(tx, id)?;
    Ok(())
}

pub(super) fn delete(tx: &Transaction<'_>, id: &str) -> TxResult<()> {
    let role: InstanceRole = tx
        .query_row("SELECT role FROM users WHERE id = ?1", [id], |row| {
            text_enum(row, 0)
        })
        .optional()?
        .ok_or(StoreError::NotFound("user".into()))?;
    keep_an_owner(tx, role == InstanceRole::Owner)?;
    keep_vault_admins(tx, &ActorId::user(id))?;
    invite_rules::revoke_created_by(tx, &ActorId::user(id))?;
    tx.execute(
        "DELETE FROM vault_grants WHERE actor_type = 'user' AND actor_id = ?1",
        [id],
    )?;
    tx.execute(
        "DELETE FROM tokens
         WHERE user_id = ?1 OR (created_by_type = 'user' AND created_by_id = ?1)",
        [id],
    )?;
    devices::delete_of_user(tx, id)?;
    tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
    Ok(())
}

impl UserStore for SqliteStore {
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
