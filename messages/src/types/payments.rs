//! The payments worker's messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Kind, entry};
use crate::payload::payload;
use crate::types::orders::{Address, Card, OrderLine};

/// `dev.warren.payments.charge.v1`: charge an order whose stock is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeCard {
    /// The order.
    pub order_id: String,
    /// What to charge, in cents.
    pub amount_cents: i64,
    /// The currency.
    pub currency: String,
    /// The card.
    pub card: Card,
    /// Where the order goes.
    pub ship_to: Address,
    /// Its lines.
    pub items: Vec<OrderLine>,
    /// Its stock reservation.
    pub reservation_id: String,
}
payload!(
    ChargeCard,
    "dev.warren.payments.charge.v1",
    check = ChargeCard::bounds
);

impl ChargeCard {
    fn bounds(&self) -> Result<(), String> {
        self.card.check()?;
        self.ship_to.check()?;
        OrderLine::check_each(&self.items)
    }
}

/// `dev.warren.payments.charged.v1`: an order was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardCharged {
    /// The order.
    pub order_id: String,
    /// The charge.
    pub charge_id: String,
    /// What was charged, in cents.
    pub amount_cents: i64,
}
payload!(CardCharged, "dev.warren.payments.charged.v1");

/// The payments worker's messages in the catalogue.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry::<ChargeCard>(Kind::Command, "Charge an order whose stock is reserved."),
    entry::<CardCharged>(Kind::Event, "An order followed hop by hop was charged."),
];
