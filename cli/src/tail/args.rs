//! The arguments of `warren tail`.

use std::time::Duration;

use super::pattern::TopicPattern;
use crate::common::parse_duration;

/// Arguments of `warren tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Which message types to show: a topic pattern over the type, where `*` is one word
    /// and `#` zero or more, e.g. dev.warren.orders.# or #.echo.#.
    #[arg(
        long = "type",
        value_name = "PATTERN",
        default_value = "#",
        value_parser = TopicPattern::parse
    )]
    pub(super) pattern: TopicPattern,
    /// Print each message as one JSON line: the envelope as received, or an object
    /// `{"unreadable": …}` describing a body that is not JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Exit after this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) count: Option<u64>,
    /// How long connecting and binding may take (each time, when reconnecting), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(super) timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    #[test]
    fn defaults_and_checks() {
        let parsed = Cli::try_parse_from(["tail"]).expect("no arguments");
        assert_eq!(parsed.tail.pattern.as_str(), "#");
        assert!(!parsed.tail.json);
        assert_eq!(parsed.tail.count, None);
        assert_eq!(parsed.tail.timeout, Duration::from_secs(10));

        let parsed = Cli::try_parse_from(["tail", "--type", "dev.warren.orders.#", "--json"])
            .expect("a pattern");
        assert_eq!(parsed.tail.pattern.as_str(), "dev.warren.orders.#");
        assert!(parsed.tail.json);

        assert!(Cli::try_parse_from(["tail", "--type", ""]).is_err());
        assert!(Cli::try_parse_from(["tail", "--type", "a b"]).is_err());
        assert!(Cli::try_parse_from(["tail", "--count", "0"]).is_err());
        assert_eq!(
            Cli::try_parse_from(["tail", "--count", "3"])
                .expect("a count")
                .tail
                .count,
            Some(3)
        );
    }
}
