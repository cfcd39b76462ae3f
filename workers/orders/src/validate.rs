//! The rules of `dev.warren.orders.place.v1` beyond its shape (docs/pipeline.md): a
//! pure function of the order.

use warren_messages::{Address, Card, PlaceOrder};

/// The most lines an order may have.
pub const MAX_LINES: usize = 50;

/// The most of one product an order line may ask for.
pub const MAX_QUANTITY: u32 = 1000;

/// The longest free text (customer, names, address lines).
const MAX_TEXT: usize = 200;

/// Every rule `order` breaks, in words; empty when it breaks none.
pub fn problems(order: &PlaceOrder) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(order_id) = &order.order_id
        && !valid_order_id(order_id)
    {
        problems.push(format!(
            "order_id {order_id:?} must be 1 to 64 letters, digits, '_' or '-'"
        ));
    }
    text(&mut problems, "customer", &order.customer);
    if order.items.is_empty() || order.items.len() > MAX_LINES {
        problems.push(format!(
            "an order has 1 to {MAX_LINES} lines, not {}",
            order.items.len()
        ));
    }
    for (index, line) in order.items.iter().enumerate() {
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            problems.push(format!(
                "line {}: quantity {} is not 1 to {MAX_QUANTITY}",
                index + 1,
                line.quantity
            ));
        }
        if line.sku.is_empty() || line.sku.len() > 64 {
            problems.push(format!(
                "line {}: the sku must be 1 to 64 characters",
                index + 1
            ));
        }
    }
    card(&mut problems, &order.card);
    address(&mut problems, &order.ship_to);
    problems
}

/// Whether `order_id` is 1 to 64 letters, digits, `_` or `-`.
pub fn valid_order_id(order_id: &str) -> bool {
    (1..=64).contains(&order_id.len())
        && order_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn text(problems: &mut Vec<String>, name: &str, value: &str) {
    if value.trim().is_empty() || value.chars().count() > MAX_TEXT {
        problems.push(format!("{name} must be 1 to {MAX_TEXT} characters"));
    }
}

fn card(problems: &mut Vec<String>, card: &Card) {
    text(problems, "card.holder", &card.holder);
    let number = &card.number;
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        problems.push("card.number must be 12 to 19 digits".to_owned());
    } else if !luhn(number) {
        problems.push("card.number fails its check digit (Luhn)".to_owned());
    }
}

fn address(problems: &mut Vec<String>, address: &Address) {
    for (name, value) in [
        ("ship_to.name", &address.name),
        ("ship_to.street", &address.street),
        ("ship_to.city", &address.city),
        ("ship_to.postcode", &address.postcode),
    ] {
        text(problems, name, value);
    }
    if address.country.len() != 2 || !address.country.bytes().all(|b| b.is_ascii_uppercase()) {
        problems.push("ship_to.country must be two capital letters (ISO 3166)".to_owned());
    }
}

/// The Luhn check of a string of digits.
pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_messages::OrderLine;

    fn valid() -> PlaceOrder {
        PlaceOrder {
            order_id: None,
            customer: "Ada".into(),
            items: vec![OrderLine {
                sku: "sku-mug".into(),
                quantity: 2,
            }],
            card: Card {
                number: "4111111111111111".into(),
                holder: "A Lovelace".into(),
            },
            ship_to: Address {
                name: "Ada".into(),
                street: "12 St James's Square".into(),
                city: "London".into(),
                postcode: "SW1Y 4JH".into(),
                country: "GB".into(),
            },
        }
    }

    #[test]
    fn a_valid_order_breaks_no_rule() {
        assert_eq!(problems(&valid()), Vec::<String>::new());
    }

    /// A change that breaks a rule.
    type Breaker = Box<dyn Fn(&mut PlaceOrder)>;

    #[test]
    fn each_rule_is_checked() {
        let cases: Vec<(&str, Breaker)> = vec![
            ("order_id", Box::new(|o| o.order_id = Some("a b".into()))),
            ("customer", Box::new(|o| o.customer = " ".into())),
            ("lines", Box::new(|o| o.items.clear())),
            ("quantity", Box::new(|o| o.items[0].quantity = 0)),
            ("quantity", Box::new(|o| o.items[0].quantity = 1001)),
            ("sku", Box::new(|o| o.items[0].sku = String::new())),
            ("12 to 19", Box::new(|o| o.card.number = "4111-1111".into())),
            (
                "Luhn",
                Box::new(|o| o.card.number = "4111111111111112".into()),
            ),
            ("country", Box::new(|o| o.ship_to.country = "gbr".into())),
            ("ship_to.city", Box::new(|o| o.ship_to.city = String::new())),
        ];
        for (expected, break_it) in cases {
            let mut order = valid();
            break_it(&mut order);
            let found = problems(&order);
            assert!(
                found.iter().any(|problem| problem.contains(expected)),
                "{expected}: {found:?}"
            );
        }
    }

    #[test]
    fn luhn_accepts_the_test_cards() {
        for card in ["4111111111111111", "4000000000000002", "4000000000000119"] {
            assert!(luhn(card), "{card}");
        }
        assert!(!luhn("4111111111111112"));
    }
}
