//! The orders worker's messages: placing an order, asking where it is, and the order
//! data every hop of the pipeline passes on (docs/pipeline.md).

use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Kind, entry};
use crate::payload::payload;

/// One line of an order, as the originator asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// The product, from the price list.
    pub sku: String,
    /// How many, 1 to 1,000.
    pub quantity: u32,
}

/// A payment card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// 12 to 19 digits that pass the Luhn check.
    pub number: String,
    /// The name on the card.
    pub holder: String,
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Who receives it.
    pub name: String,
    /// Street and number.
    pub street: String,
    /// The city.
    pub city: String,
    /// The postcode.
    pub postcode: String,
    /// Two-letter country code (ISO 3166).
    pub country: String,
}

/// `dev.warren.orders.place.v1`: place an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The order's id, chosen by the originator; `orders` makes one when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Who orders.
    pub customer: String,
    /// What, 1 to 50 lines.
    pub items: Vec<OrderLine>,
    /// How it is paid.
    pub card: Card,
    /// Where it goes.
    pub ship_to: Address,
}
payload!(PlaceOrder, "dev.warren.orders.place.v1");

/// `dev.warren.orders.completed.v1`: the order was placed, paid and shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    /// The order.
    pub order_id: String,
    /// Its shipment.
    pub shipment_id: String,
    /// The carrier's tracking code.
    pub tracking_code: String,
    /// What was charged, in cents.
    pub total_cents: i64,
    /// The currency (ISO 4217).
    pub currency: String,
    /// How many items were shipped.
    pub items: u32,
}
payload!(OrderCompleted, "dev.warren.orders.completed.v1");

/// `dev.warren.orders.get.v1`: where is this order?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetOrder {
    /// The order.
    pub order_id: String,
}
payload!(GetOrder, "dev.warren.orders.get.v1");

/// How an order failed, as its fault said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailure {
    /// The fault's code.
    pub code: String,
    /// The worker that failed it.
    pub worker: String,
    /// Where in that worker.
    pub stage: String,
    /// What went wrong.
    pub message: String,
}

/// One step of an order's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStep {
    /// The status the order reached: `placed`, `reserved`, `paid`, `shipped`, `failed`.
    pub status: String,
    /// The worker whose message said so.
    pub worker: String,
    /// When `orders` heard of it (RFC 3339).
    pub at: String,
}

/// `dev.warren.orders.status.v1`: where an order is (the result of `orders.get.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatus {
    /// The order.
    pub order_id: String,
    /// `placed`, `reserved`, `paid`, `shipped` or `failed`.
    pub status: String,
    /// Its total, in cents.
    pub total_cents: i64,
    /// The currency.
    pub currency: String,
    /// How it failed, when it did.
    pub failure: Option<OrderFailure>,
    /// Every step, in the order `orders` heard of them.
    pub history: Vec<OrderStep>,
}
payload!(OrderStatus, "dev.warren.orders.status.v1");

/// `dev.warren.orders.placed.v1`: an order was validated, priced and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// Its total, in cents.
    pub total_cents: i64,
    /// The currency.
    pub currency: String,
}
payload!(OrderPlaced, "dev.warren.orders.placed.v1");

/// The orders worker's messages in the catalogue.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry::<PlaceOrder>(Kind::Command, "Place an order."),
    entry::<OrderCompleted>(
        Kind::Outcome,
        "An order was placed, paid and shipped: the pipeline's result.",
    ),
    entry::<GetOrder>(Kind::Command, "Ask where an order is."),
    entry::<OrderStatus>(Kind::Outcome, "Where an order is: its status and history."),
    entry::<OrderPlaced>(Kind::Event, "An order was validated, priced and recorded."),
];
