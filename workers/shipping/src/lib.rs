//! The shipping worker: books the shipment of a paid order and sends the originator
//! `dev.warren.orders.completed.v1`, the pipeline's result (docs/pipeline.md).
//!
//! It owns a shipment per order (`shipments`), with its tracking code, in its own store,
//! `<store.dir>/shipping.sqlite`, changed only inside the inbox's transaction.
//!
//! Test rule: nobody delivers to postcode [`UNDELIVERABLE_POSTCODE`]
//! (`address_undeliverable`).

use std::path::Path;

use warren_messages::{BookShipment, OrderCompleted, Payload, Progress, ShipmentBooked};
use warren_runtime::{Handler, HandlerError, Incoming, Manifest, Outputs};
use warren_store::rusqlite::{self, OptionalExtension};
use warren_store::{CachedStatements, Store, StoreError};

/// What the shipping worker consumes and produces.
pub const MANIFEST: Manifest = Manifest {
    name: "shipping",
    commands: &[BookShipment::TYPE],
    events: &[],
    produces: &[OrderCompleted::TYPE, ShipmentBooked::TYPE, Progress::TYPE],
};

/// The store file's name in the `store.dir` folder.
pub const STORE_FILE: &str = "shipping.sqlite";

/// The fault code of an address nobody delivers to.
pub const ADDRESS_UNDELIVERABLE: &str = "address_undeliverable";

/// The postcode nobody delivers to.
pub const UNDELIVERABLE_POSTCODE: &str = "00000";

/// The worker's tables, by version (see `Store::open_with_migrations`).
const MIGRATIONS: &[&str] = &["CREATE TABLE shipments (
        order_id TEXT PRIMARY KEY,
        shipment_id TEXT NOT NULL,
        tracking_code TEXT NOT NULL,
        items INTEGER NOT NULL,
        booked_at TEXT NOT NULL
    );"];

/// Books shipments in its own store.
#[derive(Debug)]
pub struct ShippingHandler {
    store: Store,
}

impl ShippingHandler {
    /// Opens `<store_dir>/shipping.sqlite`, migrating it to the current schema.
    pub fn open(store_dir: &Path) -> Result<ShippingHandler, StoreError> {
        Ok(Self::new(Store::open_with_migrations(
            &store_dir.join(STORE_FILE),
            MIGRATIONS,
        )?))
    }

    /// A handler over an open store.
    pub fn new(store: Store) -> ShippingHandler {
        ShippingHandler { store }
    }

    /// The handler's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many shipments are booked.
    pub async fn shipments(&self) -> Result<u64, HandlerError> {
        self.store
            .read(|connection| {
                connection
                    .query_row_cached("SELECT COUNT(*) FROM shipments", [], |row| {
                        row.get::<_, i64>(0)
                    })
                    .map(i64::unsigned_abs)
            })
            .await
    }
}

impl Handler for ShippingHandler {
    type Input = BookShipment;

    async fn handle(&self, message: Incoming<'_, BookShipment>) -> Result<Outputs, HandlerError> {
        let order = &message.payload;
        if order.ship_to.postcode.trim() == UNDELIVERABLE_POSTCODE {
            return Err(HandlerError::refused(
                ADDRESS_UNDELIVERABLE,
                format!("nobody delivers to postcode {UNDELIVERABLE_POSTCODE}"),
            ));
        }
        let items: u32 = order.items.iter().map(|line| line.quantity).sum();
        self.store
            .process_once(&message.identity(), |connection| {
                let booked: Option<(String, String)> = sql(connection
                    .query_row_cached(
                        "SELECT shipment_id, tracking_code FROM shipments WHERE order_id = ?1",
                        [&order.order_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional())?;
                let (shipment_id, tracking_code) = match booked {
                    Some(booked) => booked,
                    None => {
                        let shipment = uuid::Uuid::now_v7();
                        let booked = (format!("shp-{shipment}"), tracking_code(shipment));
                        sql(connection.execute_cached(
                            "INSERT INTO shipments (order_id, shipment_id, tracking_code, items, \
                             booked_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                            rusqlite::params![
                                order.order_id,
                                booked.0,
                                booked.1,
                                items,
                                jiff::Timestamp::now().to_string()
                            ],
                        ))?;
                        booked
                    }
                };
                Outputs::reply(&OrderCompleted {
                    order_id: order.order_id.clone(),
                    shipment_id: shipment_id.clone(),
                    tracking_code: tracking_code.clone(),
                    total_cents: order.total_cents,
                    currency: order.currency.clone(),
                    items,
                })?
                .and_event(&ShipmentBooked {
                    order_id: order.order_id.clone(),
                    shipment_id,
                    tracking_code,
                })?
                .and_progress("booked")
            })
            .await
    }
}

/// A tracking code: `WRN` and ten letters and digits from the shipment id's random
/// bits.
fn tracking_code(shipment: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bits = shipment.as_u128();
    let mut code = String::with_capacity(13);
    code.push_str("WRN");
    for _ in 0..10 {
        code.push(char::from(
            ALPHABET[usize::try_from(bits & 31).unwrap_or(0)],
        ));
        bits >>= 5;
    }
    code
}

/// An SQLite failure inside the work: transient.
fn sql<T>(result: rusqlite::Result<T>) -> Result<T, HandlerError> {
    result.map_err(|error| HandlerError::transient(format!("shipping store: {error}")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use warren_messages::{Address, Attributes, OrderLine};
    use warren_runtime::{Output, Route};

    use super::*;

    struct TempShipping {
        folder: PathBuf,
        handler: ShippingHandler,
    }

    impl TempShipping {
        fn new() -> TempShipping {
            let folder =
                std::env::temp_dir().join(format!("warren-shipping-{}", uuid::Uuid::new_v4()));
            let handler = ShippingHandler::open(&folder).expect("open the store");
            TempShipping { folder, handler }
        }

        async fn book(
            &self,
            attributes: &Attributes,
            postcode: &str,
        ) -> Result<Outputs, HandlerError> {
            let order = BookShipment {
                order_id: "ord-1".into(),
                ship_to: Address {
                    name: "A".into(),
                    street: "S".into(),
                    city: "C".into(),
                    postcode: postcode.into(),
                    country: "GB".into(),
                },
                items: vec![
                    OrderLine {
                        sku: "sku-mug".into(),
                        quantity: 2,
                    },
                    OrderLine {
                        sku: "sku-book".into(),
                        quantity: 1,
                    },
                ],
                charge_id: "chg-1".into(),
                total_cents: 3699,
                currency: "EUR".into(),
            };
            let data = serde_json::value::to_raw_value(&order).expect("JSON");
            let incoming = Incoming::decode(attributes, &data).expect("decodes");
            self.handler.handle(incoming).await
        }
    }

    impl Drop for TempShipping {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.folder);
        }
    }

    #[test]
    fn manifest_matches_the_handler() {
        assert_eq!(MANIFEST.check_against::<BookShipment>(), Ok(()));
    }

    #[tokio::test]
    async fn a_booking_completes_the_order_once() {
        let shipping = TempShipping::new();
        let attributes = Attributes::request::<BookShipment>("/warren/payments");
        let first = shipping
            .book(&attributes, "SW1Y 4JH")
            .await
            .expect("booked");
        let completed: OrderCompleted = first.reply_payload().expect("the result");
        assert_eq!(completed.items, 3);
        assert_eq!(completed.total_cents, 3699);
        assert!(completed.shipment_id.starts_with("shp-"));
        assert!(completed.tracking_code.starts_with("WRN") && completed.tracking_code.len() == 13);
        let routes: Vec<Route> = first.iter().map(Output::route).collect();
        assert_eq!(routes, [Route::Reply, Route::Event, Route::Progress]);
        // Another message for the same order (not a redelivery) gets the same shipment.
        let other = Attributes::request::<BookShipment>("/warren/payments");
        let second = shipping
            .book(&other, "SW1Y 4JH")
            .await
            .expect("booked already");
        let again: OrderCompleted = second.reply_payload().expect("the result");
        assert_eq!(again, completed);
        assert_eq!(shipping.handler.shipments().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn the_undeliverable_postcode_is_refused() {
        let shipping = TempShipping::new();
        let attributes = Attributes::request::<BookShipment>("/warren/payments");
        let error = shipping
            .book(&attributes, UNDELIVERABLE_POSTCODE)
            .await
            .expect_err("undeliverable");
        assert!(
            matches!(&error, HandlerError::Refused { code, .. } if code == ADDRESS_UNDELIVERABLE),
            "{error:?}"
        );
        assert_eq!(shipping.handler.shipments().await.expect("count"), 0);
    }
}
