//! The rules of `dev.warren.orders.place` beyond its schema (docs/pipeline.md): a pure
//! function of the order. Decoding has already checked everything the schema says
//! (lengths, counts, ranges, patterns; `warren_messages::Payload::check`); what is left
//! is what a JSON Schema cannot say.

use warren_messages::PlaceOrder;

/// Every rule `order` breaks, in words; empty when it breaks none.
pub fn problems(order: &PlaceOrder) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in [
        ("customer", &order.customer),
        ("card.holder", &order.card.holder),
        ("ship_to.name", &order.ship_to.name),
        ("ship_to.street", &order.ship_to.street),
        ("ship_to.city", &order.ship_to.city),
        ("ship_to.postcode", &order.ship_to.postcode),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("{name} must not be blank"));
        }
    }
    if !luhn(&order.card.number) {
        problems.push("card.number fails its check digit (Luhn)".to_owned());
    }
    problems
}

/// The Luhn check of a string of digits (anything else fails it).
pub fn luhn(digits: &str) -> bool {
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return false;
    }
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
    use warren_messages::{Address, Card, OrderLine};

    fn valid() -> PlaceOrder {
        PlaceOrder {
            order_id: None,
            customer: "Ada".into(),
            currency: "EUR".into(),
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
            ("customer", Box::new(|o| o.customer = " ".into())),
            ("card.holder", Box::new(|o| o.card.holder = "\t".into())),
            ("ship_to.city", Box::new(|o| o.ship_to.city = "  ".into())),
            (
                "Luhn",
                Box::new(|o| o.card.number = "4111111111111112".into()),
            ),
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
        assert!(!luhn("4111-1111"));
    }
}
