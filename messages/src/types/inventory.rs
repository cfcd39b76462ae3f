//! The inventory worker's messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Kind, entry};
use crate::payload::payload;
use crate::types::orders::{Address, Card, OrderLine};

/// One priced line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PricedLine {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price of one, in cents.
    pub unit_price_cents: i64,
}

/// `dev.warren.inventory.reserve.v1`: reserve the stock of a priced order; what the
/// later hops need travels with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveStock {
    /// The order.
    pub order_id: String,
    /// Its lines, priced.
    pub items: Vec<PricedLine>,
    /// Its total, in cents.
    pub total_cents: i64,
    /// The currency.
    pub currency: String,
    /// How it is paid.
    pub card: Card,
    /// Where it goes.
    pub ship_to: Address,
}
payload!(
    ReserveStock,
    "dev.warren.inventory.reserve.v1",
    check = ReserveStock::bounds
);

impl ReserveStock {
    fn bounds(&self) -> Result<(), String> {
        self.card.check()?;
        self.ship_to.check()
    }
}

/// `dev.warren.inventory.reserved.v1`: the stock of an order is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReserved {
    /// The order.
    pub order_id: String,
    /// The reservation.
    pub reservation_id: String,
}
payload!(StockReserved, "dev.warren.inventory.reserved.v1");

/// The lines of an order without their prices.
pub fn unpriced(items: &[PricedLine]) -> Vec<OrderLine> {
    items
        .iter()
        .map(|line| OrderLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
        })
        .collect()
}

/// The inventory worker's messages in the catalogue.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry::<ReserveStock>(Kind::Command, "Reserve the stock of a priced order."),
    entry::<StockReserved>(
        Kind::Event,
        "The stock of an order followed hop by hop is reserved.",
    ),
];
