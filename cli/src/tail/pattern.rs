//! `--type PATTERN`: AMQP topic matching over message types, and the bindings that show
//! the types a pattern matches.

use warren_messages::catalogue::{self, Entry, Kind};
use warren_ops::tap::Binding;
use warren_runtime::topology::{COMMANDS_EXCHANGE, EVENTS_EXCHANGE};

/// The longest binding key AMQP allows (a short string).
const MAX_PATTERN_BYTES: usize = 255;

/// A topic pattern over message types, as a topic exchange reads a binding key: words
/// separated by `.`, where the word `*` matches exactly one word and the word `#` zero
/// or more. Any other word (`a*b` too) matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TopicPattern(String);

impl TopicPattern {
    /// Checks `text` can be a binding key: not empty, at most 255 bytes, no control
    /// characters and no spaces.
    pub(super) fn parse(text: &str) -> Result<TopicPattern, String> {
        if text.is_empty() {
            return Err("the pattern is empty: use # for every type".to_owned());
        }
        if text.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "the pattern is longer than {MAX_PATTERN_BYTES} bytes"
            ));
        }
        if text
            .chars()
            .any(|character| character.is_control() || character.is_whitespace())
        {
            return Err(format!(
                "{text:?} has a space or a control character, which no message type has"
            ));
        }
        Ok(TopicPattern(text.to_owned()))
    }

    /// The pattern as written.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it has no `*` or `#` word, so it matches one routing key only.
    pub(super) fn is_exact(&self) -> bool {
        self.0.split('.').all(|word| word != "*" && word != "#")
    }

    /// Whether `routing_key` matches, as a topic exchange decides it.
    pub(super) fn matches(&self, routing_key: &str) -> bool {
        topic_matches(&self.0, routing_key)
    }
}

/// The words of a routing key or binding key, as RabbitMQ splits them: the empty key
/// has none.
fn words(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

/// Whether `routing_key` matches the topic binding key `pattern`: `*` is one word, `#`
/// zero or more, every other word itself. One pass per pattern word over the positions
/// of the key it can have reached, so no pattern takes exponential time.
pub(super) fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let key = words(routing_key);
    // reachable[j]: the pattern words seen so far can match the first j words of the key.
    let mut reachable = vec![false; key.len() + 1];
    reachable[0] = true;
    for word in words(pattern) {
        let mut next = vec![false; key.len() + 1];
        match word {
            "#" => {
                let mut any = false;
                for (position, slot) in next.iter_mut().enumerate() {
                    any |= reachable[position];
                    *slot = any;
                }
            }
            "*" => next[1..].copy_from_slice(&reachable[..key.len()]),
            literal => {
                for position in 1..=key.len() {
                    next[position] = reachable[position - 1] && key[position - 1] == literal;
                }
            }
        }
        reachable = next;
    }
    reachable[key.len()]
}

/// Where the tap's queue is bound for a pattern, and what that means for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Every binding of the tap's queue.
    pub(super) bindings: Vec<Binding>,
    /// The command types bound one by one on `warren.commands`.
    pub(super) command_types: Vec<String>,
    /// Whether a command or event type of the catalogue matches.
    pub(super) matches_a_shown_type: bool,
    /// Whether an outcome type of the catalogue matches (outcomes are not shown).
    pub(super) matches_an_outcome: bool,
}

/// The bindings that show every message whose type matches `pattern`:
/// - `warren.events` is a topic exchange: the pattern itself.
/// - `warren.commands` is a direct exchange, where a pattern would only match a type
///   spelled like it: every command type of `entries` that matches, each as its own key;
///   an exact pattern is bound as it is when `entries` has no such type (another
///   program's command), and not when they list it as an event or an outcome.
pub(super) fn plan<'a>(pattern: &TopicPattern, entries: impl Iterator<Item = &'a Entry>) -> Plan {
    let mut command_types = Vec::new();
    let mut known = None;
    let mut matches_a_shown_type = false;
    let mut matches_an_outcome = false;
    for entry in entries {
        if !pattern.matches(entry.message_type) {
            continue;
        }
        match entry.kind {
            Kind::Outcome => matches_an_outcome = true,
            Kind::Command | Kind::Event => matches_a_shown_type = true,
        }
        if entry.message_type == pattern.as_str() {
            known = Some(entry.kind);
        }
        if entry.kind == Kind::Command && !command_types.iter().any(|t| t == entry.message_type) {
            command_types.push(entry.message_type.to_owned());
        }
    }
    if pattern.is_exact() && known.is_none() {
        command_types.push(pattern.as_str().to_owned());
    }
    let bindings = command_types
        .iter()
        .map(|message_type| Binding {
            exchange: COMMANDS_EXCHANGE.to_owned(),
            routing_key: message_type.clone(),
        })
        .chain(std::iter::once(Binding {
            exchange: EVENTS_EXCHANGE.to_owned(),
            routing_key: pattern.as_str().to_owned(),
        }))
        .collect();
    Plan {
        bindings,
        command_types,
        matches_a_shown_type,
        matches_an_outcome,
    }
}

/// [`plan`] over warren's catalogue.
pub(super) fn plan_for_catalogue(pattern: &TopicPattern) -> Plan {
    plan(pattern, catalogue::entries())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching_follows_the_broker() {
        for (pattern, key, expected) in [
            ("#", "dev.warren.echo.v1", true),
            ("#", "", true),
            ("dev.warren.echo.v1", "dev.warren.echo.v1", true),
            ("dev.warren.echo.v1", "dev.warren.echo.v2", false),
            ("dev.warren.echo", "dev.warren.echo.v1", false),
            ("dev.warren.orders.#", "dev.warren.orders.place.v1", true),
            ("dev.warren.orders.#", "dev.warren.orders", true),
            ("dev.warren.orders.#", "dev.warren.ordersx.place.v1", false),
            ("*.echo.*", "dev.warren.echo.v1", false),
            ("*.echo.*", "warren.echo.v1", true),
            ("*.*.echo.*", "dev.warren.echo.v1", true),
            ("*.*.echo.*", "dev.warren.echo.replied.v1", false),
            ("#.echo.#", "dev.warren.echo.replied.v1", true),
            ("#.echo.#", "dev.warren.tally.add.v1", false),
            ("#.v1", "dev.warren.tally.add.v1", true),
            ("#.#", "a", true),
            ("#.*", "", false),
            ("*", "", false),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("*", "a.b", false),
            ("*.#.*", "a", false),
            ("*.#.*", "a.b", true),
            ("*.#.*", "a.b.c.d", true),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.b", "a.x.y.c", false),
            ("a*b.#", "axb.c", false),
            ("a*b.#", "a*b.c", true),
        ] {
            assert_eq!(
                topic_matches(pattern, key),
                expected,
                "{pattern:?} against {key:?}"
            );
        }
    }

    #[test]
    fn many_hashes_do_not_take_exponential_time() {
        let pattern = vec!["#"; 100].join(".") + ".z";
        let key = vec!["a"; 200].join(".");
        assert!(!topic_matches(&pattern, &key));
        assert!(topic_matches(&pattern, &(key + ".z")));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(TopicPattern::parse("#").is_ok());
        assert!(TopicPattern::parse("dev.warren.orders.#").is_ok());
        assert!(TopicPattern::parse("").is_err());
        assert!(TopicPattern::parse("a b").is_err());
        assert!(TopicPattern::parse("a\n#").is_err());
        assert!(TopicPattern::parse("a\u{1b}").is_err());
        assert!(TopicPattern::parse(&"a".repeat(255)).is_ok());
        assert!(TopicPattern::parse(&"a".repeat(256)).is_err());
        assert!(TopicPattern::parse("*.echo.*").is_ok_and(|p| !p.is_exact()));
        assert!(TopicPattern::parse("a*b.c").is_ok_and(|p| p.is_exact()));
    }

    fn keys(plan: &Plan, exchange: &str) -> Vec<String> {
        plan.bindings
            .iter()
            .filter(|binding| binding.exchange == exchange)
            .map(|binding| binding.routing_key.clone())
            .collect()
    }

    fn pattern(text: &str) -> TopicPattern {
        TopicPattern::parse(text).expect("a valid pattern")
    }

    #[test]
    fn everything_binds_every_command_type_and_the_pattern_on_events() {
        let plan = plan_for_catalogue(&pattern("#"));
        let commands: Vec<String> = catalogue::entries()
            .filter(|entry| entry.kind == Kind::Command)
            .map(|entry| entry.message_type.to_owned())
            .collect();
        assert!(commands.contains(&"dev.warren.echo.v1".to_owned()));
        assert_eq!(keys(&plan, COMMANDS_EXCHANGE), commands);
        assert_eq!(keys(&plan, EVENTS_EXCHANGE), ["#"]);
        assert_eq!(plan.bindings.len(), commands.len() + 1, "nothing else");
        assert!(plan.matches_a_shown_type);
        assert!(plan.matches_an_outcome);
    }

    #[test]
    fn a_pattern_binds_only_the_command_types_it_matches() {
        let plan = plan_for_catalogue(&pattern("dev.warren.orders.#"));
        assert_eq!(
            keys(&plan, COMMANDS_EXCHANGE),
            [
                "dev.warren.orders.place.v2",
                "dev.warren.orders.place.v1",
                "dev.warren.orders.get.v1"
            ]
        );
        assert_eq!(keys(&plan, EVENTS_EXCHANGE), ["dev.warren.orders.#"]);
    }

    #[test]
    fn an_exact_type_is_bound_as_it_is_unless_the_catalogue_says_it_is_no_command() {
        let unknown = plan_for_catalogue(&pattern("dev.example.thing.v1"));
        assert_eq!(keys(&unknown, COMMANDS_EXCHANGE), ["dev.example.thing.v1"]);
        assert!(!unknown.matches_a_shown_type && !unknown.matches_an_outcome);

        let command = plan_for_catalogue(&pattern("dev.warren.echo.v1"));
        assert_eq!(keys(&command, COMMANDS_EXCHANGE), ["dev.warren.echo.v1"]);
        assert!(command.matches_a_shown_type && !command.matches_an_outcome);

        let event = plan_for_catalogue(&pattern("dev.warren.orders.placed.v1"));
        assert!(keys(&event, COMMANDS_EXCHANGE).is_empty());
        assert_eq!(
            keys(&event, EVENTS_EXCHANGE),
            ["dev.warren.orders.placed.v1"]
        );
    }

    #[test]
    fn a_pattern_matching_no_known_type_says_so() {
        let plan = plan_for_catalogue(&pattern("*.echo.*"));
        assert!(keys(&plan, COMMANDS_EXCHANGE).is_empty());
        assert_eq!(keys(&plan, EVENTS_EXCHANGE), ["*.echo.*"]);
        assert!(!plan.matches_a_shown_type && !plan.matches_an_outcome);
    }

    #[test]
    fn an_outcome_type_binds_no_command_and_says_it_is_not_shown() {
        let plan = plan_for_catalogue(&pattern("dev.warren.echo.replied.v1"));
        assert!(keys(&plan, COMMANDS_EXCHANGE).is_empty());
        assert!(!plan.matches_a_shown_type && plan.matches_an_outcome);

        let both = plan_for_catalogue(&pattern("dev.warren.echo.#"));
        assert_eq!(keys(&both, COMMANDS_EXCHANGE), ["dev.warren.echo.v1"]);
        assert!(both.matches_a_shown_type && both.matches_an_outcome);
    }
}
