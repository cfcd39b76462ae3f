//! The payments worker: charges an order whose stock is reserved, then asks `shipping` to
//! book it; refunds the charge when the order fails after it (docs/pipeline.md).
//!
//! It owns a charge per order (`charges`: charged, or refunded), in its own store,
//! `<store.dir>/payments.sqlite`, changed only inside the inbox's transaction. It keeps
//! the last four digits of a card, never the number.
//!
//! Test rules: card [`DECLINED_CARD`] is always declined (`card_declined`); card
//! [`PROCESSOR_ERROR_CARD`] makes the payment processor fail (`internal`); every other
//! card is charged.

use std::path::Path;

use serde_json::value::RawValue;
use warren_messages::{
    BookShipment, CardCharged, ChargeCard, Inbound, Payload, Progress, RequestFailed,
};
use warren_runtime::{Handler, HandlerError, Incoming, Manifest, Outputs};
use warren_store::rusqlite::{self, Connection, OptionalExtension};
use warren_store::{CachedStatements, Store, StoreError};

/// What the payments worker consumes and produces.
pub const MANIFEST: Manifest = Manifest {
    name: "payments",
    commands: &[ChargeCard::TYPE],
    events: &[RequestFailed::TYPE],
    produces: &[BookShipment::TYPE, CardCharged::TYPE, Progress::TYPE],
};

/// The store file's name in the `store.dir` folder.
pub const STORE_FILE: &str = "payments.sqlite";

/// The fault code of a declined card.
pub const CARD_DECLINED: &str = "card_declined";

/// A card that is always declined.
pub const DECLINED_CARD: &str = "4000000000000002";

/// A card the payment processor always fails on.
pub const PROCESSOR_ERROR_CARD: &str = "4000000000000119";

/// The worker's tables, by version (see `Store::open_with_migrations`).
const MIGRATIONS: &[&str] = &["CREATE TABLE charges (
        order_id TEXT PRIMARY KEY,
        charge_id TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        currency TEXT NOT NULL,
        card_last4 TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('charged', 'refunded')),
        updated_at TEXT NOT NULL
    );"];

/// What the payments worker accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentsInput {
    /// Charge an order.
    Charge(ChargeCard),
    /// A request failed somewhere: refund what was charged for it.
    Failed(RequestFailed),
}

impl Inbound for PaymentsInput {
    fn types() -> &'static [&'static str] {
        &[ChargeCard::TYPE, RequestFailed::TYPE]
    }

    fn decode(message_type: &str, data: &RawValue) -> Result<Self, serde_json::Error> {
        if message_type == ChargeCard::TYPE {
            warren_messages::decode_data(data).map(PaymentsInput::Charge)
        } else {
            warren_messages::decode_data(data).map(PaymentsInput::Failed)
        }
    }
}

/// Charges and refunds in its own store.
#[derive(Debug)]
pub struct PaymentsHandler {
    store: Store,
}

/// An order's charge, as the store has it.
struct Charge {
    charge_id: String,
    correlation_id: String,
    refunded: bool,
}

/// The charge id of a refund recorded for an order that was never charged.
const NEVER_CHARGED: &str = "";

impl PaymentsHandler {
    /// Opens `<store_dir>/payments.sqlite`, migrating it to the current schema.
    pub fn open(store_dir: &Path) -> Result<PaymentsHandler, StoreError> {
        Ok(Self::new(Self::open_store(&store_dir.join(STORE_FILE))?))
    }

    /// Opens the store file at `path` with the payments worker's tables.
    pub fn open_store(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_migrations(path, MIGRATIONS)
    }

    /// A handler over an open store.
    pub fn new(store: Store) -> PaymentsHandler {
        PaymentsHandler { store }
    }

    /// The handler's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn charge(
        &self,
        message: &Incoming<'_, PaymentsInput>,
        order: &ChargeCard,
    ) -> Result<Outputs, HandlerError> {
        let correlation_id = message.attributes.correlation_id();
        self.store
            .process_once(&message.identity(), |connection| {
                let charge_id = match charge(connection, &order.order_id)? {
                    Some(found) if found.refunded && !is_foreign_refund(&found, correlation_id) => {
                        // The request failed before: it is not charged again.
                        return Ok(Outputs::none());
                    }
                    Some(found) if !found.refunded => found.charge_id,
                    _ => charge_card(connection, order, correlation_id)?,
                };
                let outputs = Outputs::none().and_command(&BookShipment {
                    order_id: order.order_id.clone(),
                    ship_to: order.ship_to.clone(),
                    items: order.items.clone(),
                    charge_id: charge_id.clone(),
                    total_cents: order.amount_cents,
                    currency: order.currency.clone(),
                })?;
                // `orders` hears of this step only for an order followed hop by hop
                // (docs/pipeline.md, "Following an order").
                let outputs = if message.attributes.progress {
                    outputs.and_event(&CardCharged {
                        order_id: order.order_id.clone(),
                        charge_id,
                        amount_cents: order.amount_cents,
                    })?
                } else {
                    outputs
                };
                outputs.and_progress("charged")
            })
            .await
    }

    async fn refund(&self, message: &Incoming<'_, PaymentsInput>) -> Result<Outputs, HandlerError> {
        let Some(order_id) = message.attributes.subject.as_deref() else {
            return Ok(Outputs::none());
        };
        let correlation_id = message.attributes.correlation_id();
        self.store.process_once(&message.identity(), |connection| {
            match charge(connection, order_id)? {
                Some(found) if !found.refunded && found.correlation_id == correlation_id => {
                    sql(connection.execute_cached(
                        "UPDATE charges SET state = 'refunded', updated_at = ?2 WHERE order_id = ?1",
                        rusqlite::params![order_id, now()],
                    ))?;
                }
                Some(_) => {}
                None => {
                    sql(connection.execute_cached(
                        "INSERT INTO charges (order_id, charge_id, correlation_id, amount_cents, \
                         currency, card_last4, state, updated_at) \
                         VALUES (?1, ?2, ?3, 0, '', '', 'refunded', ?4)",
                        rusqlite::params![order_id, NEVER_CHARGED, correlation_id, now()],
                    ))?;
                }
            }
            Ok(Outputs::none())
        })
        .await
    }
}

impl Handler for PaymentsHandler {
    type Input = PaymentsInput;

    async fn handle(&self, message: Incoming<'_, PaymentsInput>) -> Result<Outputs, HandlerError> {
        match &message.payload {
            PaymentsInput::Charge(order) => self.charge(&message, order).await,
            PaymentsInput::Failed(_) => self.refund(&message).await,
        }
    }
}

/// A refund recorded for an order by another request before it was charged: it does
/// not stop this request.
fn is_foreign_refund(found: &Charge, correlation_id: &str) -> bool {
    found.charge_id == NEVER_CHARGED && found.correlation_id != correlation_id
}

/// Charges the card of `order` (by the test rules), records the charge and returns its
/// id.
fn charge_card(
    connection: &Connection,
    order: &ChargeCard,
    correlation_id: &str,
) -> Result<String, HandlerError> {
    match order.card.number.as_str() {
        DECLINED_CARD => {
            return Err(HandlerError::refused(
                CARD_DECLINED,
                "the card was declined",
            ));
        }
        PROCESSOR_ERROR_CARD => {
            return Err(HandlerError::permanent(
                warren_messages::fault_code::INTERNAL,
                "the payment processor failed on this card",
            ));
        }
        _ => {}
    }
    let charge_id = format!("chg-{}", uuid::Uuid::now_v7());
    let number = &order.card.number;
    let last4 = &number[number.len().saturating_sub(4)..];
    sql(connection.execute_cached(
        "INSERT OR REPLACE INTO charges (order_id, charge_id, correlation_id, amount_cents, \
         currency, card_last4, state, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'charged', ?7)",
        rusqlite::params![
            order.order_id,
            charge_id,
            correlation_id,
            order.amount_cents,
            order.currency,
            last4,
            now()
        ],
    ))?;
    Ok(charge_id)
}

/// The charge of `order_id`, if there is one.
fn charge(connection: &Connection, order_id: &str) -> Result<Option<Charge>, HandlerError> {
    sql(connection
        .query_row_cached(
            "SELECT charge_id, correlation_id, state FROM charges WHERE order_id = ?1",
            [order_id],
            |row| {
                Ok(Charge {
                    charge_id: row.get(0)?,
                    correlation_id: row.get(1)?,
                    refunded: row.get::<_, String>(2)? == "refunded",
                })
            },
        )
        .optional())
}

/// An SQLite failure inside the work: transient.
fn sql<T>(result: rusqlite::Result<T>) -> Result<T, HandlerError> {
    result.map_err(|error| HandlerError::transient(format!("payments store: {error}")))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// What the payments store holds: for tests and the pipeline's consistency checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaymentsCounts {
    /// Charges standing.
    pub charged: u64,
    /// Charges refunded.
    pub refunded: u64,
    /// The sum of the charges standing, in cents.
    pub charged_cents: i64,
}

impl PaymentsHandler {
    /// What the store holds now (refunds recorded for orders never charged left out).
    pub async fn counts(&self) -> Result<PaymentsCounts, HandlerError> {
        self.store
            .read(|connection| {
                connection.query_row_cached(
                    "SELECT \
                       COUNT(*) FILTER (WHERE state = 'charged'), \
                       COUNT(*) FILTER (WHERE state = 'refunded' AND charge_id != ''), \
                       COALESCE(SUM(amount_cents) FILTER (WHERE state = 'charged'), 0) \
                     FROM charges",
                    [],
                    |row| {
                        Ok(PaymentsCounts {
                            charged: row.get::<_, i64>(0)?.unsigned_abs(),
                            refunded: row.get::<_, i64>(1)?.unsigned_abs(),
                            charged_cents: row.get(2)?,
                        })
                    },
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests;
