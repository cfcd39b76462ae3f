//! Statements prepared once per connection, for what a handler runs on every message.

use rusqlite::{Connection, Params, Row};

/// `execute` and `query_row` with the statement prepared once and kept on the
/// connection, for the statements a handler runs on every message. Preparing anew each
/// time (what [`Connection::execute`] does) costs a store hop about a sixth of its CPU
/// in SQLite's parser. Works on a [`rusqlite::Transaction`] or a
/// [`rusqlite::Savepoint`] too, through their `Deref`.
pub trait CachedStatements {
    /// Runs `sql` once with `params`, like [`Connection::execute`].
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// Runs `sql` with `params` and maps its first row, like [`Connection::query_row`].
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, map: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, map: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, map)
    }
}
