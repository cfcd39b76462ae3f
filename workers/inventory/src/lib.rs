//! The inventory worker: reserves the stock of an order, then asks `payments` to charge
//! it; releases the reservation when the order fails at any hop (docs/pipeline.md).
//!
//! It owns the stock (`stock`: a count per SKU that can run out; a SKU not listed there
//! is not counted, so it never runs out) and a reservation per order (`reservations`:
//! reserved, or released). Both live in its own store, `<store.dir>/inventory.sqlite`,
//! changed only inside the inbox's transaction, so a redelivered message changes nothing
//! twice.
//!
//! Dev data and test rules: `test-out-of-stock` is never in stock; `test-slow` takes
//! [`SLOW_SKU_DELAY`] to reserve (for the deadline rule); every other SKU is unlimited.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::value::RawValue;
use warren_messages::{
    ChargeCard, Inbound, Payload, Progress, RequestFailed, ReserveStock, StockReserved, unpriced,
};
use warren_runtime::{Handler, HandlerError, Incoming, Manifest, Outputs};
use warren_store::rusqlite::{self, Connection, OptionalExtension};
use warren_store::{CachedStatements, Store, StoreError};

/// What the inventory worker consumes and produces.
pub const MANIFEST: Manifest = Manifest {
    name: "inventory",
    commands: &[ReserveStock::TYPE],
    events: &[RequestFailed::TYPE],
    produces: &[ChargeCard::TYPE, StockReserved::TYPE, Progress::TYPE],
};

/// The store file's name in the `store.dir` folder.
pub const STORE_FILE: &str = "inventory.sqlite";

/// The fault code of an order that asks for more than is in stock.
pub const OUT_OF_STOCK: &str = "out_of_stock";

/// The SKU that takes [`SLOW_SKU_DELAY`] to reserve.
pub const SLOW_SKU: &str = "test-slow";

/// How long reserving [`SLOW_SKU`] takes.
pub const SLOW_SKU_DELAY: Duration = Duration::from_secs(5);

/// The worker's tables, by version (see `Store::open_with_migrations`).
const MIGRATIONS: &[&str] = &["CREATE TABLE stock (
        sku TEXT PRIMARY KEY,
        available INTEGER NOT NULL CHECK (available >= 0)
    );
    CREATE TABLE reservations (
        order_id TEXT PRIMARY KEY,
        reservation_id TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('reserved', 'released')),
        items TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    INSERT INTO stock (sku, available) VALUES ('test-out-of-stock', 0);"];

/// What the inventory worker accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryInput {
    /// Reserve an order's stock.
    Reserve(ReserveStock),
    /// A request failed somewhere: release what was reserved for it.
    Failed(RequestFailed),
}

impl Inbound for InventoryInput {
    fn types() -> &'static [&'static str] {
        &[ReserveStock::TYPE, RequestFailed::TYPE]
    }

    fn decode(message_type: &str, data: &RawValue) -> Result<Self, serde_json::Error> {
        if message_type == ReserveStock::TYPE {
            warren_messages::decode_data(data).map(InventoryInput::Reserve)
        } else {
            warren_messages::decode_data(data).map(InventoryInput::Failed)
        }
    }
}

/// Why the inventory worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reserves and releases stock in its own store.
#[derive(Debug)]
pub struct InventoryHandler {
    store: Store,
}

/// An order's reservation, as the store has it.
struct Reservation {
    reservation_id: String,
    correlation_id: String,
    released: bool,
    items: String,
}

/// A released reservation that never reserved anything: the order failed before its
/// stock was reserved.
const NOTHING_RESERVED: &str = "[]";

impl InventoryHandler {
    /// Opens `<store_dir>/inventory.sqlite`, migrating it to the current schema.
    pub fn open(store_dir: &Path) -> Result<InventoryHandler, StartError> {
        Ok(Self::new(Self::open_store(&store_dir.join(STORE_FILE))?))
    }

    /// Opens the store file at `path` with the inventory worker's tables.
    pub fn open_store(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_migrations(path, MIGRATIONS)
    }

    /// A handler over an open store (see [`InventoryHandler::open_store`]).
    pub fn new(store: Store) -> InventoryHandler {
        InventoryHandler { store }
    }

    /// The handler's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn reserve(
        &self,
        message: &Incoming<'_, InventoryInput>,
        order: &ReserveStock,
    ) -> Result<Outputs, HandlerError> {
        if order.items.iter().any(|line| line.sku == SLOW_SKU) {
            tokio::time::sleep(SLOW_SKU_DELAY).await;
        }
        let correlation_id = message.attributes.correlation_id();
        self.store
            .process_once(&message.identity(), |connection| {
                let reservation_id = match reservation(connection, &order.order_id)? {
                    // The request failed before: nothing is reserved for it any more.
                    Some(found)
                        if found.released && !is_foreign_tombstone(&found, correlation_id) =>
                    {
                        return Ok(Outputs::none());
                    }
                    Some(found) if !found.released => found.reservation_id,
                    _ => reserve_stock(connection, order, correlation_id)?,
                };
                let outputs = Outputs::none().and_command(&ChargeCard {
                    order_id: order.order_id.clone(),
                    amount_cents: order.total_cents,
                    currency: order.currency.clone(),
                    card: order.card.clone(),
                    ship_to: order.ship_to.clone(),
                    items: unpriced(&order.items),
                    reservation_id: reservation_id.clone(),
                })?;
                // `orders` hears of this step only for an order followed hop by hop
                // (docs/pipeline.md, "Following an order").
                let outputs = if message.attributes.progress {
                    outputs.and_event(&StockReserved {
                        order_id: order.order_id.clone(),
                        reservation_id,
                    })?
                } else {
                    outputs
                };
                outputs.and_progress("reserved")
            })
            .await
    }

    async fn release(
        &self,
        message: &Incoming<'_, InventoryInput>,
    ) -> Result<Outputs, HandlerError> {
        // A failure is about an order when it names one (its subject).
        let Some(order_id) = message.attributes.subject.as_deref() else {
            return Ok(Outputs::none());
        };
        let correlation_id = message.attributes.correlation_id();
        self.store
            .process_once(&message.identity(), |connection| {
                match reservation(connection, order_id)? {
                    Some(found) if !found.released && found.correlation_id == correlation_id => {
                        let items: Vec<(String, i64)> = serde_json::from_str(&found.items)
                            .map_err(|error| {
                                HandlerError::permanent("internal", error.to_string())
                            })?;
                        // A SKU the stock does not count changes no row.
                        for (sku, quantity) in items {
                            sql(connection.execute_cached(
                                "UPDATE stock SET available = available + ?2 WHERE sku = ?1",
                                rusqlite::params![sku, quantity],
                            ))?;
                        }
                        sql(connection.execute_cached(
                            "UPDATE reservations SET state = 'released', updated_at = ?2 \
                             WHERE order_id = ?1",
                            rusqlite::params![order_id, now()],
                        ))?;
                    }
                    // Released already, or another request's: nothing to undo.
                    Some(_) => {}
                    // Failed before its stock was reserved: a reserve that comes late must
                    // not reserve it.
                    None => {
                        sql(connection.execute_cached(
                            "INSERT INTO reservations \
                             (order_id, reservation_id, correlation_id, state, items, updated_at) \
                             VALUES (?1, '', ?2, 'released', ?3, ?4)",
                            rusqlite::params![order_id, correlation_id, NOTHING_RESERVED, now()],
                        ))?;
                    }
                }
                Ok(Outputs::none())
            })
            .await
    }
}

impl Handler for InventoryHandler {
    type Input = InventoryInput;

    async fn handle(&self, message: Incoming<'_, InventoryInput>) -> Result<Outputs, HandlerError> {
        match &message.payload {
            InventoryInput::Reserve(order) => self.reserve(&message, order).await,
            InventoryInput::Failed(_) => self.release(&message).await,
        }
    }
}

/// A release recorded for an order by another request, before anything was reserved
/// for it: it does not stop this request (a failure announced under a made-up order id
/// cannot block the real order).
fn is_foreign_tombstone(found: &Reservation, correlation_id: &str) -> bool {
    found.items == NOTHING_RESERVED && found.correlation_id != correlation_id
}

/// Reserves every line of `order`, or refuses with [`OUT_OF_STOCK`] changing nothing;
/// returns the new reservation's id.
fn reserve_stock(
    connection: &Connection,
    order: &ReserveStock,
    correlation_id: &str,
) -> Result<String, HandlerError> {
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for line in &order.items {
        *wanted.entry(line.sku.as_str()).or_default() += i64::from(line.quantity);
    }
    let mut reserved: Vec<(String, i64)> = Vec::new();
    for (sku, quantity) in wanted {
        reserved.push((sku.to_owned(), quantity));
        let available: Option<i64> = sql(connection
            .query_row_cached("SELECT available FROM stock WHERE sku = ?1", [sku], |row| {
                row.get(0)
            })
            .optional())?;
        // A SKU the stock does not count is never short.
        let Some(available) = available else {
            continue;
        };
        if available < quantity {
            return Err(HandlerError::refused(
                OUT_OF_STOCK,
                format!("{sku}: {available} in stock, {quantity} asked for"),
            )
            .with_details(serde_json::json!({
                "sku": sku, "available": available, "asked": quantity
            })));
        }
        sql(connection.execute_cached(
            "UPDATE stock SET available = available - ?2 WHERE sku = ?1",
            rusqlite::params![sku, quantity],
        ))?;
    }
    let reservation_id = format!("res-{}", uuid::Uuid::now_v7());
    let items = serde_json::to_string(&reserved)
        .map_err(|error| HandlerError::permanent("internal", error.to_string()))?;
    sql(connection.execute_cached(
        "INSERT OR REPLACE INTO reservations \
         (order_id, reservation_id, correlation_id, state, items, updated_at) \
         VALUES (?1, ?2, ?3, 'reserved', ?4, ?5)",
        rusqlite::params![order.order_id, reservation_id, correlation_id, items, now()],
    ))?;
    Ok(reservation_id)
}

/// The reservation of `order_id`, if there is one.
fn reservation(
    connection: &Connection,
    order_id: &str,
) -> Result<Option<Reservation>, HandlerError> {
    sql(connection
        .query_row_cached(
            "SELECT reservation_id, correlation_id, state, items FROM reservations \
             WHERE order_id = ?1",
            [order_id],
            |row| {
                Ok(Reservation {
                    reservation_id: row.get(0)?,
                    correlation_id: row.get(1)?,
                    released: row.get::<_, String>(2)? == "released",
                    items: row.get(3)?,
                })
            },
        )
        .optional())
}

/// An SQLite failure inside the work: transient (a locked store, a full disk).
fn sql<T>(result: rusqlite::Result<T>) -> Result<T, HandlerError> {
    result.map_err(|error| HandlerError::transient(format!("inventory store: {error}")))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The totals the inventory store holds: for tests and the pipeline's consistency
/// checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InventoryCounts {
    /// Reservations still held.
    pub reserved: u64,
    /// Reservations released (the order failed), tombstones included.
    pub released: u64,
    /// Items held by the reservations still held.
    pub items_reserved: u64,
}

impl InventoryHandler {
    /// What the store holds now.
    pub async fn counts(&self) -> Result<InventoryCounts, HandlerError> {
        self.store
            .read(|connection| {
                let count = |state: &str| -> rusqlite::Result<u64> {
                    connection
                        .query_row_cached(
                            "SELECT COUNT(*) FROM reservations WHERE state = ?1",
                            [state],
                            |row| row.get::<_, i64>(0),
                        )
                        .map(i64::unsigned_abs)
                };
                let mut items_reserved = 0u64;
                let mut statement = connection
                    .prepare_cached("SELECT items FROM reservations WHERE state = 'reserved'")?;
                let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
                for items in rows {
                    let items: Vec<(String, i64)> =
                        serde_json::from_str(&items?).unwrap_or_default();
                    items_reserved += items.iter().map(|(_, n)| n.unsigned_abs()).sum::<u64>();
                }
                Ok(InventoryCounts {
                    reserved: count("reserved")?,
                    released: count("released")?,
                    items_reserved,
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
