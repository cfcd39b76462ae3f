//! Text that is safe to print on a terminal.
//!
//! What the commands print often comes from someone else (a message on the bus, an
//! outcome from the fleet), so nothing in it may act on the terminal: control characters
//! (newlines, escapes, C1 codes), line separators and bidirectional overrides are escaped
//! before it is shown ([`escape`]), and a preview is cut to a length ([`truncate`]).
//! Callers with a form of their own (quoted, JSON) build it on [`is_unsafe`].

use std::fmt::Write as _;

/// Whether `character` must not reach a terminal as it is: a control character (C0,
/// DEL, C1), a line or paragraph separator, or a bidirectional control that reorders
/// what is shown.
pub(crate) fn is_unsafe(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [`is_unsafe`] character escaped (`\n`, `\u{1b}`).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        if is_unsafe(character) {
            let _ = write!(out, "{}", character.escape_default());
        } else {
            out.push(character);
        }
    }
    out
}

/// At most `max_chars` characters of `text`, with `…` when some were left out.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_truncating() {
        assert_eq!(escape("plain caf\u{e9}"), "plain caf\u{e9}");
        assert_eq!(escape("a\r\nb\u{85}\u{202e}"), r"a\r\nb\u{85}\u{202e}");
        assert_eq!(truncate("héllo", 3), "hél…");
        assert_eq!(truncate("héllo", 5), "héllo");
    }
}
