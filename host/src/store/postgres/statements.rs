//! Prepared statements kept per connection: [`Tx`] is the transaction every entity file
//! works in, and prepares each SQL text once per connection ([`CachedClient`]), so that a
//! statement costs one round trip instead of two (prepare, then execute). The texts are the
//! entity files' constants, a bounded set. Prepared statements belong to the server session:
//! a pooler in front of PostgreSQL must keep sessions (PgBouncer's `session` mode, not
//! `transaction`), and a migration that changes a table's columns under running servers
//! makes their statements on it fail until they reconnect.

use std::collections::HashMap;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::types::{ToSql, Type};
use postgres::{Client, Row, Socket, Statement, Transaction};
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;

/// A connection and the statements prepared on it.
pub(super) struct CachedClient {
    pub(super) client: Client,
    pub(super) statements: HashMap<String, Statement>,
}

/// `r2d2_postgres`'s manager, with a statement cache per connection.
#[derive(Debug)]
pub(super) struct CachingManager<T>(pub(super) PostgresConnectionManager<T>);

impl<T> ManageConnection for CachingManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + 'static + Sync + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = CachedClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<CachedClient, postgres::Error> {
        Ok(CachedClient {
            client: self.0.connect()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, connection: &mut CachedClient) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut connection.client)
    }

    fn has_broken(&self, connection: &mut CachedClient) -> bool {
        self.0.has_broken(&mut connection.client)
    }
}

/// A transaction whose statements are prepared once per connection.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl<'a> Tx<'a> {
    pub(super) fn new(tx: Transaction<'a>, statements: &'a mut HashMap<String, Statement>) -> Self {
        Tx { tx, statements }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.execute(&statement, params)
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query(&statement, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query_opt(&statement, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query_one(&statement, params)
    }

    /// `COPY ... FROM STDIN (FORMAT binary)` of `rows`, each with the values of the columns
    /// `sql` names, of the `types` given; how many rows went in.
    pub(super) fn copy_in_binary<'r>(
        &mut self,
        sql: &str,
        types: &[Type],
        rows: impl IntoIterator<Item = Vec<&'r (dyn ToSql + Sync)>>,
    ) -> Result<u64, postgres::Error> {
        let mut writer = BinaryCopyInWriter::new(self.tx.copy_in(sql)?, types);
        for row in rows {
            writer.write(&row)?;
        }
        writer.finish()
    }

    /// Statements without parameters or results, not prepared.
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }

    pub(super) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }
}
