use std::path::PathBuf;

use serde_json::{Value, json};
use warren_messages::Attributes;
use warren_runtime::{Output, Route};

use super::*;

/// An orders handler over a store in a fresh temp folder, removed when dropped.
struct TempOrders {
    folder: PathBuf,
    handler: OrdersHandler,
}

impl TempOrders {
    fn new() -> TempOrders {
        let folder = std::env::temp_dir().join(format!("warren-orders-{}", uuid::Uuid::new_v4()));
        let handler = OrdersHandler::open(&folder).expect("open the store");
        TempOrders { folder, handler }
    }

    async fn send(&self, attributes: &Attributes, data: Value) -> Result<Outputs, HandlerError> {
        let data = serde_json::value::to_raw_value(&data).expect("JSON");
        let incoming = Incoming::decode(attributes, &data).expect("decodes");
        self.handler.handle(incoming).await
    }

    /// Places `order` as a new `orders.place.v1` request (upcast to v2 on receipt);
    /// returns the request's attributes and the outputs.
    async fn place(&self, order: Value) -> (Attributes, Result<Outputs, HandlerError>) {
        self.place_as::<PlaceOrderV1>(order).await
    }

    /// Places `order` as a new request of type `P`.
    async fn place_as<P: Payload>(
        &self,
        order: Value,
    ) -> (Attributes, Result<Outputs, HandlerError>) {
        let attributes = Attributes::request::<P>("/warren/cli/test");
        let outputs = self.send(&attributes, order).await;
        (attributes, outputs)
    }

    /// An event of `worker` about `order_id`, in request `correlation`.
    async fn event<P: Payload>(&self, worker: &str, correlation: &str, subject: &str, data: Value) {
        let mut attributes = Attributes::request::<P>(&format!("/warren/{worker}"));
        attributes.correlationid = Some(correlation.into());
        attributes.subject = Some(subject.into());
        self.send(&attributes, data)
            .await
            .expect("an event is taken");
    }

    async fn status(&self, order_id: &str) -> Result<OrderStatus, HandlerError> {
        let attributes = Attributes::request::<GetOrder>("/warren/cli/test");
        let outputs = self
            .send(&attributes, json!({ "order_id": order_id }))
            .await?;
        Ok(outputs.reply_payload().expect("a status"))
    }
}

impl Drop for TempOrders {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn order(order_id: &str) -> Value {
    json!({
        "order_id": order_id,
        "customer": "Ada Lovelace",
        "items": [{"sku": "sku-mug", "quantity": 2}, {"sku": "sku-book", "quantity": 1}],
        "card": {"number": "4111111111111111", "holder": "A Lovelace"},
        "ship_to": {"name": "Ada", "street": "12 St James's Square", "city": "London",
                    "postcode": "SW1Y 4JH", "country": "GB"}
    })
}

/// The reserve command an order placed sends first.
fn reserve_of(outputs: &Outputs) -> ReserveStock {
    outputs
        .iter()
        .next()
        .and_then(Output::decode)
        .expect("a reserve")
}

fn code(error: &HandlerError) -> &str {
    match error {
        HandlerError::Refused { code, .. } | HandlerError::Permanent { code, .. } => code,
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn manifest_matches_the_handler() {
    assert_eq!(MANIFEST.check_against::<OrdersInput>(), Ok(()));
}

#[tokio::test]
async fn an_order_is_priced_recorded_and_sent_to_inventory() {
    let orders = TempOrders::new();
    let (_, outputs) = orders.place(order("ord-1")).await;
    let outputs = outputs.expect("placed");
    let routes: Vec<Route> = outputs.iter().map(Output::route).collect();
    assert_eq!(routes, [Route::Command, Route::Event, Route::Progress]);
    assert!(
        outputs
            .iter()
            .all(|output| output.subject() == Some("ord-1")),
        "{outputs:?}"
    );
    let reserve = reserve_of(&outputs);
    assert_eq!(reserve.total_cents, 2 * 850 + 1999);
    assert_eq!(reserve.currency, "EUR");
    assert_eq!(reserve.items[0].unit_price_cents, 850);
    let status = orders.status("ord-1").await.expect("a status");
    assert_eq!(status.status, "placed");
    assert_eq!(status.total_cents, 3699);
    assert_eq!(status.history.len(), 1);
    let last4: String = orders
        .handler
        .store()
        .read(|connection| {
            connection.query_row("SELECT card_last4 FROM orders", [], |row| row.get(0))
        })
        .await
        .expect("last4");
    assert_eq!(last4, "1111");
}

#[tokio::test]
async fn an_order_without_an_id_gets_one() {
    let orders = TempOrders::new();
    let mut without_id = order("x");
    without_id
        .as_object_mut()
        .expect("object")
        .remove("order_id");
    let (_, outputs) = orders.place(without_id).await;
    let reserve = reserve_of(&outputs.expect("placed"));
    assert!(reserve.order_id.starts_with("ord-"), "{}", reserve.order_id);
}

#[tokio::test]
async fn a_v2_order_names_its_currency_and_only_the_price_lists_is_taken() {
    let orders = TempOrders::new();
    let mut in_euros = order("ord-v2");
    in_euros["currency"] = json!("EUR");
    let (_, outputs) = orders.place_as::<PlaceOrder>(in_euros).await;
    let reserve = reserve_of(&outputs.expect("placed"));
    assert_eq!(
        (reserve.currency.as_str(), reserve.total_cents),
        ("EUR", 3699)
    );
    let mut in_dollars = order("ord-usd");
    in_dollars["currency"] = json!("USD");
    let (_, outputs) = orders.place_as::<PlaceOrder>(in_dollars).await;
    let error = outputs.expect_err("USD");
    assert_eq!(code(&error), UNSUPPORTED_CURRENCY);
    assert!(matches!(error, HandlerError::Refused { .. }));
    assert_eq!(orders.status("ord-usd").await.map(|s| s.status).ok(), None);
    // A v2 order without its currency is not a v2 order.
    let attributes = Attributes::request::<PlaceOrder>("/warren/cli/test");
    let data = serde_json::value::to_raw_value(&order("ord-none")).expect("JSON");
    assert!(Incoming::<OrdersInput>::decode(&attributes, &data).is_err());
}

#[test]
fn a_v1_order_is_upcast_to_v2_in_euros() {
    let attributes = Attributes::request::<PlaceOrderV1>("/warren/cli/test");
    let data = serde_json::value::to_raw_value(&order("ord-v1")).expect("JSON");
    let incoming = Incoming::<OrdersInput>::decode(&attributes, &data).expect("decodes");
    let OrdersInput::Place(placed) = incoming.payload else {
        panic!("not a place: {:?}", incoming.payload);
    };
    assert_eq!(placed.currency, "EUR");
    assert_eq!(placed.order_id.as_deref(), Some("ord-v1"));
    // The shape's bounds are checked when decoding, before the handler sees it.
    let mut no_items = order("ord-v1");
    no_items["items"] = json!([]);
    let data = serde_json::value::to_raw_value(&no_items).expect("JSON");
    assert!(Incoming::<OrdersInput>::decode(&attributes, &data).is_err());
}

#[tokio::test]
async fn broken_rules_and_unknown_skus_are_invalid_payloads() {
    let orders = TempOrders::new();
    let mut bad_card = order("ord-2");
    bad_card["card"]["number"] = json!("4111111111111112");
    let (_, outputs) = orders.place(bad_card).await;
    let error = outputs.expect_err("Luhn");
    assert_eq!(code(&error), "invalid_payload");
    assert!(matches!(error, HandlerError::Permanent { .. }));
    let mut unknown = order("ord-3");
    unknown["items"][0]["sku"] = json!("sku-unicorn");
    let (_, outputs) = orders.place(unknown).await;
    assert_eq!(code(&outputs.expect_err("unknown sku")), "invalid_payload");
    assert_eq!(
        orders.handler.counts().await.expect("counts"),
        OrdersCounts::default()
    );
}

#[tokio::test]
async fn an_order_id_is_placed_once() {
    let orders = TempOrders::new();
    let (first, outputs) = orders.place(order("ord-4")).await;
    let outputs = outputs.expect("placed");
    // The same message again is a redelivery: the same outputs.
    let again = orders
        .send(&first, order("ord-4"))
        .await
        .expect("redelivered");
    let ids = |outputs: &Outputs| {
        outputs
            .iter()
            .map(|o| o.id().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&outputs));
    // Another request placing the same order id is refused.
    let (_, other) = orders.place(order("ord-4")).await;
    let error = other.expect_err("duplicate");
    assert_eq!(code(&error), DUPLICATE_ORDER);
    assert!(matches!(error, HandlerError::Refused { .. }));
}

#[tokio::test]
async fn events_move_an_order_on_and_a_failure_ends_it() {
    let orders = TempOrders::new();
    let (placed, _) = orders.place(order("ord-5")).await;
    let correlation = placed.correlation_id().to_owned();
    orders
        .event::<CardCharged>(
            "payments",
            &correlation,
            "ord-5",
            json!({"order_id": "ord-5", "charge_id": "chg-1", "amount_cents": 3699}),
        )
        .await;
    // Out of order: reserved arrives after paid and does not move it back.
    orders
        .event::<StockReserved>(
            "inventory",
            &correlation,
            "ord-5",
            json!({"order_id": "ord-5", "reservation_id": "res-1"}),
        )
        .await;
    let status = orders.status("ord-5").await.expect("status");
    assert_eq!(status.status, "paid");
    let steps: Vec<(&str, &str)> = status
        .history
        .iter()
        .map(|step| (step.status.as_str(), step.worker.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("placed", "orders"),
            ("paid", "payments"),
            ("reserved", "inventory")
        ]
    );

    // A failure of another request about this order is not this order's.
    let failure = json!({"code": "address_undeliverable", "worker": "shipping", "stage": "handle", "message": "no"});
    orders
        .event::<RequestFailed>("shipping", "someone-else", "ord-5", failure.clone())
        .await;
    assert_eq!(orders.status("ord-5").await.expect("status").status, "paid");
    orders
        .event::<RequestFailed>("shipping", &correlation, "ord-5", failure)
        .await;
    let status = orders.status("ord-5").await.expect("status");
    assert_eq!(status.status, "failed");
    let failure = status.failure.expect("a failure");
    assert_eq!(
        (failure.code.as_str(), failure.worker.as_str()),
        ("address_undeliverable", "shipping")
    );
    // Nothing moves a failed order on.
    orders
        .event::<ShipmentBooked>(
            "shipping",
            &correlation,
            "ord-5",
            json!({"order_id": "ord-5", "shipment_id": "s", "tracking_code": "t"}),
        )
        .await;
    assert_eq!(
        orders.status("ord-5").await.expect("status").status,
        "failed"
    );
    assert_eq!(
        orders.handler.counts().await.expect("counts").of("failed"),
        1
    );
}

#[tokio::test]
async fn an_unknown_order_is_refused() {
    let orders = TempOrders::new();
    let error = orders.status("ord-never").await.expect_err("unknown");
    assert_eq!(code(&error), UNKNOWN_ORDER);
}
