//! The shipping worker's messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Kind, entry};
use crate::payload::payload;
use crate::types::orders::{Address, OrderLine};

/// `dev.warren.shipping.book.v1`: book the shipment of a paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BookShipment {
    /// The order.
    pub order_id: String,
    /// Where it goes.
    pub ship_to: Address,
    /// Its lines.
    pub items: Vec<OrderLine>,
    /// Its charge.
    pub charge_id: String,
    /// What was charged, in cents.
    pub total_cents: i64,
    /// The currency.
    pub currency: String,
}
payload!(
    BookShipment,
    "dev.warren.shipping.book.v1",
    check = BookShipment::bounds
);

impl BookShipment {
    fn bounds(&self) -> Result<(), String> {
        self.ship_to.check()?;
        OrderLine::check_each(&self.items)
    }
}

/// `dev.warren.shipping.booked.v1`: an order's shipment is booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentBooked {
    /// The order.
    pub order_id: String,
    /// The shipment.
    pub shipment_id: String,
    /// The carrier's tracking code.
    pub tracking_code: String,
}
payload!(ShipmentBooked, "dev.warren.shipping.booked.v1");

/// The shipping worker's messages in the catalogue.
pub(crate) const CATALOGUE: &[Entry] = &[
    entry::<BookShipment>(Kind::Command, "Book the shipment of a paid order."),
    entry::<ShipmentBooked>(Kind::Event, "An order's shipment is booked."),
];
