//! The orders worker: validates, prices and records an order, then asks `inventory` to
//! reserve its stock; keeps each order's status current from the other hops' events
//! (every hop's for an order followed hop by hop, the last or the failing hop's for any
//! order), and answers where an order is (docs/pipeline.md).
//!
//! It owns the price list (`products`) and the orders (`orders`, with their `history`),
//! in its own store, `<store.dir>/orders.sqlite`, changed only inside the inbox's
//! transaction. It keeps the last four digits of a card, never the number.

mod validate;

use std::path::Path;

use serde_json::value::RawValue;
use warren_messages::{
    CardCharged, GetOrder, Inbound, OrderFailure, OrderPlaced, OrderStatus, OrderStep, Payload,
    PlaceOrder, PlaceOrderV1, PricedLine, Progress, RequestFailed, ReserveStock, ShipmentBooked,
    StockReserved, Upcast, decode_data, fault_code,
};
use warren_runtime::{Handler, HandlerError, Incoming, Manifest, Outputs};
use warren_store::rusqlite::{self, Connection, OptionalExtension};
use warren_store::{CachedStatements, Store, StoreError};

pub use validate::{luhn, problems};

/// What the orders worker consumes and produces.
pub const MANIFEST: Manifest = Manifest {
    name: "orders",
    commands: &[PlaceOrder::TYPE, PlaceOrderV1::TYPE, GetOrder::TYPE],
    events: &[
        StockReserved::TYPE,
        CardCharged::TYPE,
        ShipmentBooked::TYPE,
        RequestFailed::TYPE,
    ],
    produces: &[
        ReserveStock::TYPE,
        OrderPlaced::TYPE,
        OrderStatus::TYPE,
        Progress::TYPE,
    ],
};

/// The store file's name in the `store.dir` folder.
pub const STORE_FILE: &str = "orders.sqlite";

/// The fault code of an order id that was placed already.
pub const DUPLICATE_ORDER: &str = "duplicate_order";

/// The fault code of `orders.get.v1` for an order never placed.
pub const UNKNOWN_ORDER: &str = "unknown_order";

/// The fault code of an order in a currency the price list is not in.
pub const UNSUPPORTED_CURRENCY: &str = "unsupported_currency";

/// The currency of the price list.
pub const CURRENCY: &str = "EUR";

/// The worker's tables, by version (see `Store::open_with_migrations`). The price list
/// is dev data: ordinary SKUs and the documented test SKUs.
const MIGRATIONS: &[&str] = &["CREATE TABLE products (
        sku TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0)
    );
    CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,
        correlation_id TEXT NOT NULL,
        customer TEXT NOT NULL,
        total_cents INTEGER NOT NULL,
        currency TEXT NOT NULL,
        card_last4 TEXT NOT NULL,
        items TEXT NOT NULL,
        status TEXT NOT NULL,
        failure TEXT,
        placed_at TEXT NOT NULL
    );
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id TEXT NOT NULL,
        status TEXT NOT NULL,
        worker TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX history_by_order ON history (order_id, seq);
    INSERT INTO products (sku, name, unit_price_cents) VALUES
        ('sku-mug', 'Mug', 850),
        ('sku-book', 'Book', 1999),
        ('sku-apple', 'Apple', 120),
        ('sku-pear', 'Pear', 95),
        ('sku-pen', 'Pen', 250),
        ('test-out-of-stock', 'Never in stock', 500),
        ('test-slow', 'Slow to reserve', 300);"];

/// The statuses of an order, in the order they are reached; `failed` ends it.
const STATUSES: [&str; 4] = ["placed", "reserved", "paid", "shipped"];

/// What the orders worker accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrdersInput {
    /// Place an order (a `orders.place.v1` upcast to v2).
    Place(PlaceOrder),
    /// Where is an order?
    Get(GetOrder),
    /// Its stock is reserved.
    Reserved(StockReserved),
    /// It is paid.
    Charged(CardCharged),
    /// It is shipped.
    Booked(ShipmentBooked),
    /// A request failed somewhere.
    Failed(RequestFailed),
}

impl Inbound for OrdersInput {
    fn types() -> &'static [&'static str] {
        &[
            PlaceOrder::TYPE,
            PlaceOrderV1::TYPE,
            GetOrder::TYPE,
            StockReserved::TYPE,
            CardCharged::TYPE,
            ShipmentBooked::TYPE,
            RequestFailed::TYPE,
        ]
    }

    fn decode(message_type: &str, data: &RawValue) -> Result<Self, serde_json::Error> {
        match message_type {
            PlaceOrder::TYPE => decode_data(data).map(OrdersInput::Place),
            PlaceOrderV1::TYPE => {
                decode_data(data).map(|v1: PlaceOrderV1| OrdersInput::Place(v1.upcast()))
            }
            GetOrder::TYPE => decode_data(data).map(OrdersInput::Get),
            StockReserved::TYPE => decode_data(data).map(OrdersInput::Reserved),
            CardCharged::TYPE => decode_data(data).map(OrdersInput::Charged),
            ShipmentBooked::TYPE => decode_data(data).map(OrdersInput::Booked),
            _ => decode_data(data).map(OrdersInput::Failed),
        }
    }
}

/// Records orders and their progress in its own store.
#[derive(Debug)]
pub struct OrdersHandler {
    store: Store,
}

impl OrdersHandler {
    /// Opens `<store_dir>/orders.sqlite`, migrating it to the current schema.
    pub fn open(store_dir: &Path) -> Result<OrdersHandler, StoreError> {
        Ok(Self::new(Store::open_with_migrations(
            &store_dir.join(STORE_FILE),
            MIGRATIONS,
        )?))
    }

    /// A handler over an open store.
    pub fn new(store: Store) -> OrdersHandler {
        OrdersHandler { store }
    }

    /// The handler's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn place(
        &self,
        message: &Incoming<'_, OrdersInput>,
        order: &PlaceOrder,
    ) -> Result<Outputs, HandlerError> {
        let found = problems(order);
        if !found.is_empty() {
            return Err(invalid(found.join("; ")));
        }
        if order.currency != CURRENCY {
            return Err(HandlerError::refused(
                UNSUPPORTED_CURRENCY,
                format!(
                    "the price list is in {CURRENCY}, not {}; send the order in {CURRENCY}",
                    order.currency
                ),
            ));
        }
        let order_id = order
            .order_id
            .clone()
            .unwrap_or_else(|| format!("ord-{}", uuid::Uuid::now_v7()));
        let correlation_id = message.attributes.correlation_id();
        self.store
            .process_once(&message.identity(), |connection| {
                if let Some(status) = status_of(connection, &order_id)? {
                    return Err(HandlerError::refused(
                        DUPLICATE_ORDER,
                        format!("order {order_id} was placed already; it is {status}"),
                    ));
                }
                let items = price(connection, order)?;
                let total_cents = items
                    .iter()
                    .try_fold(0i64, |total, line| {
                        line.unit_price_cents
                            .checked_mul(i64::from(line.quantity))
                            .and_then(|amount| total.checked_add(amount))
                    })
                    .ok_or_else(|| invalid("the total is too large".to_owned()))?;
                let number = &order.card.number;
                let items_json = serde_json::to_string(&order.items).map_err(|error| {
                    HandlerError::permanent(fault_code::INTERNAL, error.to_string())
                })?;
                sql(connection.execute_cached(
                    "INSERT INTO orders (order_id, correlation_id, customer, total_cents, currency, \
                     card_last4, items, status, failure, placed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'placed', NULL, ?8)",
                    rusqlite::params![
                        order_id,
                        correlation_id,
                        order.customer,
                        total_cents,
                        CURRENCY,
                        &number[number.len().saturating_sub(4)..],
                        items_json,
                        now()
                    ],
                ))?;
                append_history(connection, &order_id, "placed", MANIFEST.name)?;
                Ok(Outputs::none()
                    .and_command(&ReserveStock {
                        order_id: order_id.clone(),
                        items,
                        total_cents,
                        currency: CURRENCY.to_owned(),
                        card: order.card.clone(),
                        ship_to: order.ship_to.clone(),
                    })?
                    .and_event(&OrderPlaced {
                        order_id: order_id.clone(),
                        total_cents,
                        currency: CURRENCY.to_owned(),
                    })?
                    .and_progress("placed")?
                    .with_subject(&order_id))
            })
            .await
    }

    async fn get(&self, get: &GetOrder) -> Result<Outputs, HandlerError> {
        let status = self
            .store
            .read(|connection| order_status(connection, &get.order_id))
            .await?;
        match status {
            Some(status) => Outputs::reply(&status),
            None => Err(HandlerError::refused(
                UNKNOWN_ORDER,
                format!("no order {:?} was ever placed here", get.order_id),
            )),
        }
    }

    /// Moves an order on to `status`, as `worker` says: an order never goes back, and a
    /// failed one stays failed; the history keeps every step heard of.
    async fn advance(
        &self,
        message: &Incoming<'_, OrdersInput>,
        order_id: &str,
        status: &str,
    ) -> Result<Outputs, HandlerError> {
        let worker = worker_of(&message.attributes.source).unwrap_or("unknown");
        self.store
            .process_once(&message.identity(), |connection| {
                let Some(current) = status_of(connection, order_id)? else {
                    return Ok(Outputs::none());
                };
                if rank(status) > rank(&current) && current != "failed" {
                    sql(connection.execute_cached(
                        "UPDATE orders SET status = ?2 WHERE order_id = ?1",
                        [order_id, status],
                    ))?;
                }
                append_history(connection, order_id, status, worker)?;
                Ok(Outputs::none())
            })
            .await
    }

    /// Marks an order failed, when the failure is of the request that placed it.
    async fn fail(
        &self,
        message: &Incoming<'_, OrdersInput>,
        failed: &RequestFailed,
    ) -> Result<Outputs, HandlerError> {
        let Some(order_id) = message.attributes.subject.as_deref() else {
            return Ok(Outputs::none());
        };
        let correlation_id = message.attributes.correlation_id();
        self.store
            .process_once(&message.identity(), |connection| {
                let placed_by: Option<String> = sql(connection
                    .query_row_cached(
                        "SELECT correlation_id FROM orders WHERE order_id = ?1",
                        [order_id],
                        |row| row.get(0),
                    )
                    .optional())?;
                if placed_by.as_deref() != Some(correlation_id) {
                    return Ok(Outputs::none());
                }
                let failure = OrderFailure {
                    code: failed.code.clone(),
                    worker: failed.worker.clone(),
                    stage: failed.stage.clone(),
                    message: failed.message.clone(),
                };
                let failure = serde_json::to_string(&failure).map_err(|error| {
                    HandlerError::permanent(fault_code::INTERNAL, error.to_string())
                })?;
                sql(connection.execute_cached(
                    "UPDATE orders SET status = 'failed', failure = ?2 \
                     WHERE order_id = ?1 AND status != 'failed'",
                    [order_id, &failure],
                ))?;
                append_history(connection, order_id, "failed", &failed.worker)?;
                Ok(Outputs::none())
            })
            .await
    }
}

impl Handler for OrdersHandler {
    type Input = OrdersInput;

    async fn handle(&self, message: Incoming<'_, OrdersInput>) -> Result<Outputs, HandlerError> {
        match &message.payload {
            OrdersInput::Place(order) => self.place(&message, order).await,
            OrdersInput::Get(get) => self.get(get).await,
            OrdersInput::Reserved(event) => {
                self.advance(&message, &event.order_id, "reserved").await
            }
            OrdersInput::Charged(event) => self.advance(&message, &event.order_id, "paid").await,
            OrdersInput::Booked(event) => self.advance(&message, &event.order_id, "shipped").await,
            OrdersInput::Failed(failed) => self.fail(&message, failed).await,
        }
    }
}

/// The `invalid_payload` fault of an order that breaks a rule.
fn invalid(problems: String) -> HandlerError {
    HandlerError::permanent(fault_code::INVALID_PAYLOAD, problems)
}

/// The order's lines with their prices, or `invalid_payload` for a SKU not in the
/// price list.
fn price(connection: &Connection, order: &PlaceOrder) -> Result<Vec<PricedLine>, HandlerError> {
    let mut priced = Vec::with_capacity(order.items.len());
    for line in &order.items {
        let unit_price_cents: Option<i64> = sql(connection
            .query_row_cached(
                "SELECT unit_price_cents FROM products WHERE sku = ?1",
                [&line.sku],
                |row| row.get(0),
            )
            .optional())?;
        let unit_price_cents =
            unit_price_cents.ok_or_else(|| invalid(format!("unknown sku {:?}", line.sku)))?;
        priced.push(PricedLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_price_cents,
        });
    }
    Ok(priced)
}

/// The status of `order_id`, when it was placed.
fn status_of(connection: &Connection, order_id: &str) -> Result<Option<String>, HandlerError> {
    sql(connection
        .query_row_cached(
            "SELECT status FROM orders WHERE order_id = ?1",
            [order_id],
            |row| row.get(0),
        )
        .optional())
}

fn append_history(
    connection: &Connection,
    order_id: &str,
    status: &str,
    worker: &str,
) -> Result<(), HandlerError> {
    sql(connection.execute_cached(
        "INSERT INTO history (order_id, status, worker, at) VALUES (?1, ?2, ?3, ?4)",
        [order_id, status, worker, &now()],
    ))?;
    Ok(())
}

/// Where `order_id` is, from the store, or `None` when it was never placed.
fn order_status(connection: &Connection, order_id: &str) -> rusqlite::Result<Option<OrderStatus>> {
    let row: Option<(String, i64, String, Option<String>)> = connection
        .query_row_cached(
            "SELECT status, total_cents, currency, failure FROM orders WHERE order_id = ?1",
            [order_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((status, total_cents, currency, failure)) = row else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT status, worker, at FROM history WHERE order_id = ?1 ORDER BY seq",
    )?;
    let history = statement
        .query_map([order_id], |row| {
            Ok(OrderStep {
                status: row.get(0)?,
                worker: row.get(1)?,
                at: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(OrderStatus {
        order_id: order_id.to_owned(),
        status,
        total_cents,
        currency,
        failure: failure.and_then(|text| serde_json::from_str(&text).ok()),
        history,
    }))
}

/// How far `status` is along the way (`failed` is past everything).
fn rank(status: &str) -> usize {
    STATUSES
        .iter()
        .position(|known| *known == status)
        .unwrap_or(STATUSES.len())
}

/// The worker a CloudEvents `source` names (`/warren/<worker>`).
fn worker_of(source: &str) -> Option<&str> {
    source
        .strip_prefix("/warren/")
        .filter(|name| !name.contains('/'))
}

/// An SQLite failure inside the work: transient.
fn sql<T>(result: rusqlite::Result<T>) -> Result<T, HandlerError> {
    result.map_err(|error| HandlerError::transient(format!("orders store: {error}")))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// How many orders are in each status: for tests and the pipeline's consistency checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrdersCounts {
    /// `(status, count)`, sorted by status.
    pub by_status: Vec<(String, u64)>,
}

impl OrdersCounts {
    /// The count of `status`.
    pub fn of(&self, status: &str) -> u64 {
        self.by_status
            .iter()
            .find(|(name, _)| name == status)
            .map_or(0, |(_, count)| *count)
    }
}

impl OrdersHandler {
    /// How many orders are in each status now.
    pub async fn counts(&self) -> Result<OrdersCounts, HandlerError> {
        self.store
            .read(|connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status",
                )?;
                let by_status = statement
                    .query_map([], |row| {
                        Ok((row.get(0)?, row.get::<_, i64>(1)?.unsigned_abs()))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(OrdersCounts { by_status })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
