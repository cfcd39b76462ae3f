use std::path::PathBuf;

use serde_json::json;
use warren_messages::{Address, Attributes, Card, PricedLine};
use warren_runtime::{Output, Route};

use super::*;

/// An inventory handler over a store in a fresh temp folder, removed when dropped.
struct TempInventory {
    folder: PathBuf,
    handler: InventoryHandler,
}

impl TempInventory {
    fn new() -> TempInventory {
        let folder =
            std::env::temp_dir().join(format!("warren-inventory-{}", uuid::Uuid::new_v4()));
        let handler = InventoryHandler::open(&folder).expect("open the store");
        TempInventory { folder, handler }
    }

    /// Sets the stock of `sku` to `available`.
    async fn stock(&self, sku: &str, available: i64) {
        self.handler
            .store()
            .read(|connection| {
                connection.execute(
                    "INSERT OR REPLACE INTO stock (sku, available) VALUES (?1, ?2)",
                    rusqlite::params![sku, available],
                )
            })
            .await
            .expect("stock");
    }

    async fn available(&self, sku: &str) -> i64 {
        self.handler
            .store()
            .read(|connection| {
                connection.query_row("SELECT available FROM stock WHERE sku = ?1", [sku], |row| {
                    row.get(0)
                })
            })
            .await
            .expect("available")
    }

    async fn send(
        &self,
        attributes: &Attributes,
        data: serde_json::Value,
    ) -> Result<Outputs, HandlerError> {
        let data = serde_json::value::to_raw_value(&data).expect("JSON");
        let incoming = Incoming::decode(attributes, &data).expect("decodes");
        self.handler.handle(incoming).await
    }
}

impl Drop for TempInventory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn order(order_id: &str, lines: &[(&str, u32)]) -> ReserveStock {
    ReserveStock {
        order_id: order_id.into(),
        items: lines
            .iter()
            .map(|(sku, quantity)| PricedLine {
                sku: (*sku).into(),
                quantity: *quantity,
                unit_price_cents: 100,
            })
            .collect(),
        total_cents: 100,
        currency: "EUR".into(),
        card: Card {
            number: "4111111111111111".into(),
            holder: "A".into(),
        },
        ship_to: Address {
            name: "A".into(),
            street: "S".into(),
            city: "C".into(),
            postcode: "P".into(),
            country: "GB".into(),
        },
    }
}

/// A reserve command of one request (its correlation id is `correlation`).
fn reserve_attributes(correlation: &str) -> Attributes {
    let mut attributes = Attributes::request::<ReserveStock>("/warren/orders");
    attributes.correlationid = Some(correlation.into());
    attributes
}

/// The failure of request `correlation`, about `order_id`.
fn failure(correlation: &str, order_id: &str) -> (Attributes, serde_json::Value) {
    let mut attributes = Attributes::request::<RequestFailed>("/warren/payments");
    attributes.correlationid = Some(correlation.into());
    attributes.subject = Some(order_id.into());
    let data =
        json!({"code": "card_declined", "worker": "payments", "stage": "handle", "message": "no"});
    (attributes, data)
}

fn code(error: &HandlerError) -> &str {
    match error {
        HandlerError::Refused { code, .. } | HandlerError::Permanent { code, .. } => code,
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn manifest_matches_the_handler() {
    assert_eq!(MANIFEST.check_against::<InventoryInput>(), Ok(()));
}

#[tokio::test]
async fn a_reservation_asks_payments_to_charge_and_is_made_once() {
    let inventory = TempInventory::new();
    inventory.stock("sku-limited", 5).await;
    let attributes = reserve_attributes("c-1");
    let data = serde_json::to_value(order(
        "ord-1",
        &[("sku-limited", 2), ("sku-mug", 1), ("sku-limited", 1)],
    ))
    .expect("JSON");
    let first = inventory
        .send(&attributes, data.clone())
        .await
        .expect("reserved");
    let routes: Vec<Route> = first.iter().map(Output::route).collect();
    assert_eq!(routes, [Route::Command, Route::Progress]);
    let charge: ChargeCard = first
        .iter()
        .next()
        .and_then(Output::decode)
        .expect("a charge");
    assert_eq!(charge.order_id, "ord-1");
    assert!(charge.reservation_id.starts_with("res-"));
    assert_eq!(
        inventory.available("sku-limited").await,
        2,
        "3 of 5 reserved"
    );

    let again = inventory
        .send(&attributes, data)
        .await
        .expect("a redelivery");
    let ids = |outputs: &Outputs| {
        outputs
            .iter()
            .map(|output| output.id().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&first), "the same outputs");
    assert_eq!(inventory.available("sku-limited").await, 2, "reserved once");
    let counts = inventory.handler.counts().await.expect("counts");
    assert_eq!((counts.reserved, counts.items_reserved), (1, 4));
}

/// `orders` hears of the reservation only when the order is followed hop by hop.
#[tokio::test]
async fn a_followed_order_tells_orders_of_its_reservation() {
    let inventory = TempInventory::new();
    let mut attributes = reserve_attributes("c-1");
    attributes.progress = true;
    let data = serde_json::to_value(order("ord-1", &[("sku-mug", 1)])).expect("JSON");
    let outputs = inventory.send(&attributes, data).await.expect("reserved");
    let routes: Vec<Route> = outputs.iter().map(Output::route).collect();
    assert_eq!(routes, [Route::Command, Route::Event, Route::Progress]);
    let reserved: StockReserved = outputs
        .iter()
        .find_map(Output::decode)
        .expect("the reserved event");
    assert_eq!(reserved.order_id, "ord-1");
    assert!(reserved.reservation_id.starts_with("res-"));
}

#[tokio::test]
async fn too_little_stock_is_refused_and_reserves_nothing() {
    let inventory = TempInventory::new();
    inventory.stock("sku-limited", 1).await;
    let data = serde_json::to_value(order(
        "ord-2",
        &[("sku-limited", 1), ("test-out-of-stock", 1)],
    ))
    .expect("JSON");
    let error = inventory
        .send(&reserve_attributes("c-2"), data)
        .await
        .expect_err("out of stock");
    assert_eq!(code(&error), OUT_OF_STOCK);
    assert_eq!(inventory.available("sku-limited").await, 1, "nothing kept");
    assert_eq!(
        inventory.handler.counts().await.expect("counts"),
        InventoryCounts::default()
    );
}

#[tokio::test]
async fn a_failure_releases_the_reservation_once() {
    let inventory = TempInventory::new();
    inventory.stock("sku-limited", 5).await;
    let data = serde_json::to_value(order("ord-3", &[("sku-limited", 4)])).expect("JSON");
    inventory
        .send(&reserve_attributes("c-3"), data)
        .await
        .expect("reserved");
    assert_eq!(inventory.available("sku-limited").await, 1);

    // Another request's failure about the same order undoes nothing.
    let (other, failed) = failure("c-other", "ord-3");
    inventory
        .send(&other, failed.clone())
        .await
        .expect("handled");
    assert_eq!(inventory.available("sku-limited").await, 1);

    let (attributes, failed) = failure("c-3", "ord-3");
    inventory
        .send(&attributes, failed.clone())
        .await
        .expect("released");
    assert_eq!(
        inventory.available("sku-limited").await,
        5,
        "the stock came back"
    );
    // The same failure announced again (a new message): nothing more comes back.
    let (again, _) = failure("c-3", "ord-3");
    inventory
        .send(&again, failed)
        .await
        .expect("released already");
    assert_eq!(inventory.available("sku-limited").await, 5);
    let counts = inventory.handler.counts().await.expect("counts");
    assert_eq!(
        (counts.reserved, counts.released, counts.items_reserved),
        (0, 1, 0)
    );
}

#[tokio::test]
async fn a_reserve_after_its_requests_failure_reserves_nothing() {
    let inventory = TempInventory::new();
    inventory.stock("sku-limited", 5).await;
    let (attributes, failed) = failure("c-4", "ord-4");
    inventory.send(&attributes, failed).await.expect("recorded");
    let data = serde_json::to_value(order("ord-4", &[("sku-limited", 1)])).expect("JSON");
    let late = inventory
        .send(&reserve_attributes("c-4"), data.clone())
        .await
        .expect("late");
    assert!(late.is_empty(), "the chain stops: {late:?}");
    assert_eq!(inventory.available("sku-limited").await, 5);

    // A failure announced under another request does not block the real order.
    let (forged, failed) = failure("c-forged", "ord-5");
    inventory.send(&forged, failed).await.expect("recorded");
    let data = serde_json::to_value(order("ord-5", &[("sku-limited", 1)])).expect("JSON");
    let real = inventory
        .send(&reserve_attributes("c-5"), data)
        .await
        .expect("reserved");
    assert_eq!(real.len(), 2, "the charge command and the progress note");
    assert_eq!(inventory.available("sku-limited").await, 4);
}

#[tokio::test]
async fn a_failure_without_an_order_is_ignored() {
    let inventory = TempInventory::new();
    let mut attributes = Attributes::request::<RequestFailed>("/warren/tally");
    attributes.subject = None;
    let outputs = inventory
        .send(
            &attributes,
            json!({"code": "not_json", "worker": "tally", "stage": "decode", "message": "x"}),
        )
        .await
        .expect("ignored");
    assert!(outputs.is_empty());
    assert_eq!(
        inventory.handler.counts().await.expect("counts"),
        InventoryCounts::default()
    );
}

#[tokio::test(start_paused = true)]
async fn the_slow_sku_takes_its_time() {
    let inventory = TempInventory::new();
    let started = tokio::time::Instant::now();
    let data = serde_json::to_value(order("ord-6", &[(SLOW_SKU, 1)])).expect("JSON");
    inventory
        .send(&reserve_attributes("c-6"), data)
        .await
        .expect("reserved");
    assert!(started.elapsed() >= SLOW_SKU_DELAY);
}
