use std::path::PathBuf;

use serde_json::json;
use warren_messages::{Address, Attributes, Card, OrderLine};
use warren_runtime::{Output, Route};

use super::*;

/// A payments handler over a store in a fresh temp folder, removed when dropped.
struct TempPayments {
    folder: PathBuf,
    handler: PaymentsHandler,
}

impl TempPayments {
    fn new() -> TempPayments {
        let folder = std::env::temp_dir().join(format!("warren-payments-{}", uuid::Uuid::new_v4()));
        let handler = PaymentsHandler::open(&folder).expect("open the store");
        TempPayments { folder, handler }
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

    async fn counts(&self) -> PaymentsCounts {
        self.handler.counts().await.expect("counts")
    }
}

impl Drop for TempPayments {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn charge_data(order_id: &str, card: &str) -> serde_json::Value {
    serde_json::to_value(ChargeCard {
        order_id: order_id.into(),
        amount_cents: 1234,
        currency: "EUR".into(),
        card: Card {
            number: card.into(),
            holder: "A".into(),
        },
        ship_to: Address {
            name: "A".into(),
            street: "S".into(),
            city: "C".into(),
            postcode: "P".into(),
            country: "GB".into(),
        },
        items: vec![OrderLine {
            sku: "sku-mug".into(),
            quantity: 1,
        }],
        reservation_id: "res-1".into(),
    })
    .expect("JSON")
}

fn charge_attributes(correlation: &str) -> Attributes {
    let mut attributes = Attributes::request::<ChargeCard>("/warren/inventory");
    attributes.correlationid = Some(correlation.into());
    attributes
}

fn failure(correlation: &str, order_id: &str) -> (Attributes, serde_json::Value) {
    let mut attributes = Attributes::request::<RequestFailed>("/warren/shipping");
    attributes.correlationid = Some(correlation.into());
    attributes.subject = Some(order_id.into());
    let data = json!({"code": "address_undeliverable", "worker": "shipping", "stage": "handle", "message": "no"});
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
    assert_eq!(MANIFEST.check_against::<PaymentsInput>(), Ok(()));
}

#[tokio::test]
async fn a_charge_asks_shipping_to_book_and_is_made_once() {
    let payments = TempPayments::new();
    let attributes = charge_attributes("c-1");
    let first = payments
        .send(&attributes, charge_data("ord-1", "4111111111111111"))
        .await
        .expect("charged");
    let routes: Vec<Route> = first.iter().map(Output::route).collect();
    assert_eq!(routes, [Route::Command, Route::Progress]);
    let book: BookShipment = first
        .iter()
        .next()
        .and_then(Output::decode)
        .expect("a booking");
    assert!(book.charge_id.starts_with("chg-"));
    assert_eq!(book.total_cents, 1234);
    let again = payments
        .send(&attributes, charge_data("ord-1", "4111111111111111"))
        .await
        .expect("a redelivery");
    let ids = |outputs: &Outputs| {
        outputs
            .iter()
            .map(|o| o.id().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(
        payments.counts().await,
        PaymentsCounts {
            charged: 1,
            refunded: 0,
            charged_cents: 1234
        }
    );
    let last4: String = payments
        .handler
        .store()
        .read(|connection| {
            connection.query_row("SELECT card_last4 FROM charges", [], |row| row.get(0))
        })
        .await
        .expect("last4");
    assert_eq!(last4, "1111", "only the last four digits are kept");
}

/// `orders` hears of the charge only when the order is followed hop by hop.
#[tokio::test]
async fn a_followed_order_tells_orders_of_its_charge() {
    let payments = TempPayments::new();
    let mut attributes = charge_attributes("c-1");
    attributes.progress = true;
    let outputs = payments
        .send(&attributes, charge_data("ord-1", "4111111111111111"))
        .await
        .expect("charged");
    let routes: Vec<Route> = outputs.iter().map(Output::route).collect();
    assert_eq!(routes, [Route::Command, Route::Event, Route::Progress]);
    let charged: CardCharged = outputs
        .iter()
        .find_map(Output::decode)
        .expect("the charged event");
    assert_eq!(
        (charged.order_id.as_str(), charged.amount_cents),
        ("ord-1", 1234)
    );
}

#[tokio::test]
async fn the_test_cards_are_declined_or_fail() {
    let payments = TempPayments::new();
    let error = payments
        .send(
            &charge_attributes("c-2"),
            charge_data("ord-2", DECLINED_CARD),
        )
        .await
        .expect_err("declined");
    assert_eq!(code(&error), CARD_DECLINED);
    assert!(matches!(error, HandlerError::Refused { .. }));
    let error = payments
        .send(
            &charge_attributes("c-3"),
            charge_data("ord-3", PROCESSOR_ERROR_CARD),
        )
        .await
        .expect_err("processor error");
    assert_eq!(code(&error), "internal");
    assert_eq!(payments.counts().await, PaymentsCounts::default());
}

#[tokio::test]
async fn a_failure_after_the_charge_refunds_it_once() {
    let payments = TempPayments::new();
    payments
        .send(
            &charge_attributes("c-4"),
            charge_data("ord-4", "4111111111111111"),
        )
        .await
        .expect("charged");
    let (other, failed) = failure("c-other", "ord-4");
    payments
        .send(&other, failed.clone())
        .await
        .expect("not ours");
    assert_eq!(payments.counts().await.charged, 1);
    let (attributes, failed) = failure("c-4", "ord-4");
    payments
        .send(&attributes, failed.clone())
        .await
        .expect("refunded");
    let (again, _) = failure("c-4", "ord-4");
    payments
        .send(&again, failed)
        .await
        .expect("refunded already");
    assert_eq!(
        payments.counts().await,
        PaymentsCounts {
            charged: 0,
            refunded: 1,
            charged_cents: 0
        }
    );
}

#[tokio::test]
async fn a_charge_after_its_requests_failure_charges_nothing() {
    let payments = TempPayments::new();
    let (attributes, failed) = failure("c-5", "ord-5");
    payments.send(&attributes, failed).await.expect("recorded");
    let late = payments
        .send(
            &charge_attributes("c-5"),
            charge_data("ord-5", "4111111111111111"),
        )
        .await
        .expect("late");
    assert!(late.is_empty(), "{late:?}");
    assert_eq!(payments.counts().await.charged, 0);
}
