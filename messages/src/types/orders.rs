//! The orders worker's messages: placing an order, asking where it is, and the order
//! data every hop of the pipeline passes on (docs/pipeline.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::catalogue::{Entry, Kind, entry};
use crate::payload::{Upcast, payload};

/// The longest free text of an order (customer, names, address lines), in characters.
pub const MAX_TEXT: usize = 200;

/// The most lines an order may have.
pub const MAX_LINES: usize = 50;

/// The most of one product an order line may ask for.
pub const MAX_QUANTITY: u32 = 1000;

/// One line of an order, as the originator asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// The product, from the price list.
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
    /// How many, 1 to 1,000.
    #[schemars(range(min = 1, max = 1000))]
    pub quantity: u32,
}

impl OrderLine {
    /// The bounds of its schema, the field named from the line.
    fn check(&self) -> Result<(), String> {
        bounds::length("sku", &self.sku, 1, 64)?;
        bounds::range("quantity", self.quantity, 1, MAX_QUANTITY)
    }

    /// The bounds of each of `lines`, which must be 1 to [`MAX_LINES`].
    pub(crate) fn check_all(lines: &[OrderLine]) -> Result<(), String> {
        bounds::items("items", lines, 1, MAX_LINES)?;
        OrderLine::check_each(lines)
    }

    /// The bounds of each of `lines`.
    pub(crate) fn check_each(lines: &[OrderLine]) -> Result<(), String> {
        lines.iter().enumerate().try_for_each(|(index, line)| {
            line.check()
                .map_err(|problem| format!("items[{index}].{problem}"))
        })
    }
}

/// A payment card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// 12 to 19 digits; `orders` also checks the Luhn check digit.
    #[schemars(regex(pattern = r"^[0-9]{12,19}$"))]
    pub number: String,
    /// The name on the card.
    #[schemars(length(min = 1, max = 200))]
    pub holder: String,
}

impl Card {
    /// The bounds of its schema.
    pub(crate) fn check(&self) -> Result<(), String> {
        bounds::ascii(
            "card.number",
            &self.number,
            (12, 19),
            |byte| byte.is_ascii_digit(),
            "^[0-9]{12,19}$",
        )?;
        bounds::length("card.holder", &self.holder, 1, MAX_TEXT)
    }
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Who receives it.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// Street and number.
    #[schemars(length(min = 1, max = 200))]
    pub street: String,
    /// The city.
    #[schemars(length(min = 1, max = 200))]
    pub city: String,
    /// The postcode.
    #[schemars(length(min = 1, max = 200))]
    pub postcode: String,
    /// Two capital letters (ISO 3166).
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: String,
}

impl Address {
    /// The bounds of its schema.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("ship_to.name", &self.name),
            ("ship_to.street", &self.street),
            ("ship_to.city", &self.city),
            ("ship_to.postcode", &self.postcode),
        ] {
            bounds::length(field, value, 1, MAX_TEXT)?;
        }
        bounds::ascii(
            "ship_to.country",
            &self.country,
            (2, 2),
            |byte| byte.is_ascii_uppercase(),
            "^[A-Z]{2}$",
        )
    }
}

/// `dev.warren.orders.place.v2`: place an order, in a currency the customer names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The order's id, chosen by the originator (1 to 64 of `A-Z a-z 0-9 _ -`);
    /// `orders` makes one when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub order_id: Option<String>,
    /// Who orders.
    #[schemars(length(min = 1, max = 200))]
    pub customer: String,
    /// The currency the customer pays in (ISO 4217, three capital letters). `orders`
    /// refuses one its price list is not in (`unsupported_currency`) rather than charge
    /// an amount the customer did not expect.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// What, 1 to 50 lines.
    #[schemars(length(min = 1, max = 50))]
    pub items: Vec<OrderLine>,
    /// How it is paid.
    pub card: Card,
    /// Where it goes.
    pub ship_to: Address,
}
payload!(
    PlaceOrder,
    "dev.warren.orders.place.v2",
    check = PlaceOrder::bounds
);

impl PlaceOrder {
    fn bounds(&self) -> Result<(), String> {
        order_bounds(&self.order_id, &self.customer, &self.items)?;
        bounds::ascii(
            "currency",
            &self.currency,
            (3, 3),
            |byte| byte.is_ascii_uppercase(),
            "^[A-Z]{3}$",
        )?;
        self.card.check()?;
        self.ship_to.check()
    }
}

/// The bounds of the fields every version of `orders.place` has.
fn order_bounds(
    order_id: &Option<String>,
    customer: &str,
    items: &[OrderLine],
) -> Result<(), String> {
    if let Some(order_id) = order_id {
        bounds::ascii(
            "order_id",
            order_id,
            (1, 64),
            |byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-',
            "^[A-Za-z0-9_-]{1,64}$",
        )?;
    }
    bounds::length("customer", customer, 1, MAX_TEXT)?;
    OrderLine::check_all(items)
}

/// `dev.warren.orders.place.v1`: place an order, priced in euros. Still accepted:
/// upcast to [`PlaceOrder`] (v2) on receipt, with `currency` `EUR`, which is what a v1
/// order meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderV1 {
    /// The order's id, chosen by the originator (1 to 64 of `A-Z a-z 0-9 _ -`);
    /// `orders` makes one when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub order_id: Option<String>,
    /// Who orders.
    #[schemars(length(min = 1, max = 200))]
    pub customer: String,
    /// What, 1 to 50 lines.
    #[schemars(length(min = 1, max = 50))]
    pub items: Vec<OrderLine>,
    /// How it is paid.
    pub card: Card,
    /// Where it goes.
    pub ship_to: Address,
}
payload!(
    PlaceOrderV1,
    "dev.warren.orders.place.v1",
    check = PlaceOrderV1::bounds
);

/// The currency every v1 order was priced in.
pub const V1_CURRENCY: &str = "EUR";

impl PlaceOrderV1 {
    fn bounds(&self) -> Result<(), String> {
        order_bounds(&self.order_id, &self.customer, &self.items)?;
        self.card.check()?;
        self.ship_to.check()
    }
}

impl Upcast for PlaceOrderV1 {
    type Next = PlaceOrder;

    fn upcast(self) -> PlaceOrder {
        PlaceOrder {
            order_id: self.order_id,
            customer: self.customer,
            currency: V1_CURRENCY.to_owned(),
            items: self.items,
            card: self.card,
            ship_to: self.ship_to,
        }
    }
}

/// `dev.warren.orders.completed.v1`: the order was placed, paid and shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrder {
    /// The order.
    pub order_id: String,
}
payload!(GetOrder, "dev.warren.orders.get.v1");

/// How an order failed, as its fault said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderStep {
    /// The status the order reached: `placed`, `reserved`, `paid`, `shipped`, `failed`.
    pub status: String,
    /// The worker whose message said so.
    pub worker: String,
    /// When `orders` heard of it (RFC 3339).
    pub at: String,
}

/// `dev.warren.orders.status.v1`: where an order is (the result of `orders.get.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    entry::<PlaceOrder>(
        Kind::Command,
        "Place an order, in a currency the customer names.",
    )
    .answered_by::<OrderCompleted>(),
    entry::<PlaceOrderV1>(Kind::Command, "Place an order, priced in euros.")
        .answered_by::<OrderCompleted>()
        .upcast_to::<PlaceOrder>(),
    entry::<OrderCompleted>(
        Kind::Outcome,
        "An order was placed, paid and shipped: the pipeline's result.",
    ),
    entry::<GetOrder>(Kind::Command, "Ask where an order is.").answered_by::<OrderStatus>(),
    entry::<OrderStatus>(Kind::Outcome, "Where an order is: its status and history."),
    entry::<OrderPlaced>(Kind::Event, "An order was validated, priced and recorded."),
];
