//! The transparent proxy's local CA in PostgreSQL: the one row of `mitm_ca`, its private key sealed
//! under the data key. [`KeyStore`](crate::store::KeyStore) for
//! [`PostgresStore`](super::PostgresStore) (`keys.rs`) calls these inside its transactions; it is
//! created once and never replaced, so replicas that start together all end up with the CA of the
//! first (the others get `Conflict` and read it).

use super::Tx;

use super::errors::{Constraint, TxResult};
use super::{column, fixed_bytes, narrow, query_opt};
use crate::store::StoredCa;
use crate::vault::crypto::Sealed;

pub(super) fn get(tx: &mut Tx<'_>) -> TxResult<Option<StoredCa>> {
    query_opt(
        tx,
        "SELECT common_name, cert_pem, key_version, nonce, ciphertext, created_at
         FROM mitm_ca WHERE id = 1",
        &[],
        |row| {
            Ok(StoredCa {
                common_name: column(row, 0)?,
                cert_pem: column(row, 1)?,
                sealed_key: Sealed {
                    key_version: narrow(row, 2)?,
                    nonce: fixed_bytes(row, 3)?,
                    ciphertext: column(row, 4)?,
                },
                created_at: column(row, 5)?,
            })
        },
    )
}

pub(super) fn init(tx: &mut Tx<'_>, ca: &StoredCa) -> TxResult<()> {
    tx.execute(
        "INSERT INTO mitm_ca (id, common_name, cert_pem, key_version, nonce, ciphertext,
                              created_at)
         VALUES (1, $1, $2, $3, $4, $5, $6)",
        &[
            &ca.common_name,
            &ca.cert_pem,
            &i64::from(ca.sealed_key.key_version),
            &&ca.sealed_key.nonce[..],
            &ca.sealed_key.ciphertext,
            &ca.created_at,
        ],
    )
    .on_unique("a local CA")?;
    Ok(())
}
