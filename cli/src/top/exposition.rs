//! The Prometheus text format (0.0.4), read as far as `warren top` needs: each sample
//! line's metric name, labels and value. Comments (`# HELP`, `# TYPE`) and blank lines
//! are passed over; a line that does not parse is reported as such and the rest is
//! read on. Nothing here panics, whatever the input.

use std::borrow::Cow;

/// One sample line: `name{label="value",…} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample<'a> {
    pub(super) name: &'a str,
    /// The labels in the order written, values unescaped.
    pub(super) labels: Vec<(&'a str, Cow<'a, str>)>,
    pub(super) value: f64,
}

impl Sample<'_> {
    /// The value of the label `name`, if the sample has it.
    pub(super) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// Every sample line of `text`, in order: `Some` for a sample, `None` for a line that
/// is neither a sample, a comment nor blank.
pub(super) fn samples(text: &str) -> impl Iterator<Item = Option<Sample<'_>>> {
    text.lines().filter_map(|line| {
        let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() || line.starts_with('#') {
            None
        } else {
            Some(parse_line(line))
        }
    })
}

/// A cursor over one line; every slice it takes ends on an ASCII byte, so on a
/// character boundary.
struct Cursor<'a> {
    line: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.position).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    /// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (`:` only in metric names).
    fn name(&mut self, colons: bool) -> Option<&'a str> {
        let start = self.position;
        let allowed = |byte: u8, first: bool| {
            byte.is_ascii_alphabetic()
                || byte == b'_'
                || (colons && byte == b':')
                || (!first && byte.is_ascii_digit())
        };
        while let Some(byte) = self.peek() {
            if !allowed(byte, self.position == start) {
                break;
            }
            self.position += 1;
        }
        if self.position == start {
            return None;
        }
        self.line.get(start..self.position)
    }

    /// A quoted label value, with `\\`, `\"` and `\n` unescaped.
    fn quoted(&mut self) -> Option<Cow<'a, str>> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.position;
        let mut unescaped: Option<String> = None;
        loop {
            let byte = self.peek()?;
            match byte {
                b'"' => {
                    let value = match unescaped {
                        Some(text) => Cow::Owned(text),
                        None => Cow::Borrowed(self.line.get(start..self.position)?),
                    };
                    self.position += 1;
                    return Some(value);
                }
                b'\\' => {
                    let text = unescaped.get_or_insert_with(|| {
                        self.line.get(start..self.position).unwrap_or("").to_owned()
                    });
                    let escaped = match self.line.as_bytes().get(self.position + 1)? {
                        b'\\' => '\\',
                        b'"' => '"',
                        b'n' => '\n',
                        _ => return None,
                    };
                    text.push(escaped);
                    self.position += 2;
                }
                _ => {
                    // The whole character, however many bytes it has.
                    let character = self.line.get(self.position..)?.chars().next()?;
                    if let Some(text) = &mut unescaped {
                        text.push(character);
                    }
                    self.position += character.len_utf8();
                }
            }
        }
    }

    /// The next run of characters up to a blank or the end.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.position;
        while let Some(byte) = self.peek() {
            if byte == b' ' || byte == b'\t' {
                break;
            }
            self.position += 1;
        }
        if self.position == start {
            return None;
        }
        self.line.get(start..self.position)
    }
}

/// The most labels read on one sample; a line with more is not one of warren's.
const MAX_LABELS: usize = 32;

fn parse_line(line: &str) -> Option<Sample<'_>> {
    let mut cursor = Cursor { line, position: 0 };
    let name = cursor.name(true)?;
    cursor.skip_blanks();
    let mut labels = Vec::new();
    if cursor.eat(b'{') {
        loop {
            cursor.skip_blanks();
            if cursor.eat(b'}') {
                break;
            }
            if labels.len() == MAX_LABELS {
                return None;
            }
            let label = cursor.name(false)?;
            cursor.skip_blanks();
            if !cursor.eat(b'=') {
                return None;
            }
            cursor.skip_blanks();
            labels.push((label, cursor.quoted()?));
            cursor.skip_blanks();
            if !cursor.eat(b',') {
                cursor.skip_blanks();
                if cursor.eat(b'}') {
                    break;
                }
                return None;
            }
        }
    }
    cursor.skip_blanks();
    let value = parse_value(cursor.token()?)?;
    cursor.skip_blanks();
    // An optional timestamp (milliseconds), then nothing.
    if let Some(timestamp) = cursor.token() {
        timestamp.parse::<i64>().ok()?;
        cursor.skip_blanks();
        if cursor.peek().is_some() {
            return None;
        }
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A sample value: a float as Go writes it, `+Inf`, `-Inf` or `NaN`.
pub(super) fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        // Rust also reads "inf", "infinity", "nan" in any case: not the format's.
        _ if text
            .bytes()
            .any(|byte| byte.is_ascii_alphabetic() && byte != b'e' && byte != b'E') =>
        {
            None
        }
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(line: &str) -> Option<Sample<'_>> {
        let mut all: Vec<Option<Sample<'_>>> = samples(line).collect();
        assert_eq!(all.len(), 1, "{line:?}");
        all.pop().flatten()
    }

    #[test]
    fn reads_what_a_worker_serves() {
        let text = "\
# HELP warren_messages_in_flight Deliveries being worked on.
# TYPE warren_messages_in_flight gauge
warren_messages_in_flight{worker=\"echo\"} 2

# TYPE messaging_process_duration_seconds histogram
messaging_process_duration_seconds_bucket{worker=\"echo\",message_type=\"dev.warren.echo.v1\",outcome=\"ok\",le=\"0.005\"} 3
messaging_process_duration_seconds_bucket{worker=\"echo\",message_type=\"dev.warren.echo.v1\",outcome=\"ok\",le=\"+Inf\"} 4
messaging_process_duration_seconds_sum{worker=\"echo\",message_type=\"dev.warren.echo.v1\",outcome=\"ok\"} 0.0123
messaging_process_duration_seconds_count{worker=\"echo\",message_type=\"dev.warren.echo.v1\",outcome=\"ok\"} 4
warren_reconnects_total 0
";
        let read: Vec<Sample<'_>> = samples(text).map(|s| s.expect("a sample")).collect();
        assert_eq!(read.len(), 6);
        assert_eq!(read[0].name, "warren_messages_in_flight");
        assert_eq!(read[0].label("worker"), Some("echo"));
        assert_eq!(read[0].value, 2.0);
        assert_eq!(read[2].label("le"), Some("+Inf"));
        assert_eq!(read[2].value, 4.0);
        assert_eq!(read[3].value, 0.0123);
        assert_eq!(read[5].name, "warren_reconnects_total");
        assert!(read[5].labels.is_empty());
    }

    #[test]
    fn label_values_are_unescaped_and_may_hold_anything() {
        let sample =
            only(r#"m{a="x\"y",b="back\\slash",c="new\nline",d="ünï {},=" } 1.5e3 1700000000000"#)
                .expect("a sample");
        assert_eq!(sample.label("a"), Some("x\"y"));
        assert_eq!(sample.label("b"), Some("back\\slash"));
        assert_eq!(sample.label("c"), Some("new\nline"));
        assert_eq!(sample.label("d"), Some("ünï {},="));
        assert_eq!(sample.value, 1500.0);
        let trailing_comma = only(r#"m{a="1",} 2"#).expect("a sample");
        assert_eq!(trailing_comma.label("a"), Some("1"));
        assert!(only("m{} NaN").expect("a sample").value.is_nan());
        assert_eq!(only("m -Inf").expect("a sample").value, f64::NEG_INFINITY);
    }

    #[test]
    fn garbled_lines_are_refused_without_panicking() {
        for line in [
            "{a=\"1\"} 1",
            "m{a=\"1\" 1",
            "m{a=1} 1",
            "m{a=\"1\"}",
            "m{a=\"1\"} one",
            "m{a=\"1\"} 1 2 3",
            "m{a=\"1\"} 1 soon",
            "m{a=\"\\x\"} 1",
            "m{a=\"unterminated} 1",
            "m{a=\"x\\",
            "m{=\"1\"} 1",
            "m{a=\"1\"b=\"2\"} 1",
            "m inf",
            "m infinity",
            "m 0x10",
            "9m 1",
            "mé 1",
            "m{é=\"1\"} 1",
            "m{a=\"1\"}\u{7f} 1",
        ] {
            assert_eq!(only(line), None, "{line:?}");
        }
    }

    #[test]
    fn every_prefix_and_byte_soup_is_survived() {
        let line = r#"messaging_process_duration_seconds_bucket{worker="é\"\\\n",le="+Inf"} 4 17"#;
        for end in 0..=line.len() {
            if let Some(prefix) = line.get(..end) {
                let _ = samples(prefix).count();
            }
        }
        let mut state: u32 = 12345;
        for _ in 0..2000 {
            let text: String = (0..40)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let alphabet = "m_{}=\",\\ \t\n1.e+-InfNaé#";
                    let characters: Vec<char> = alphabet.chars().collect();
                    characters[(state >> 16) as usize % characters.len()]
                })
                .collect();
            let _ = samples(&text).count();
        }
    }

    #[test]
    fn comments_and_blank_lines_are_not_samples() {
        assert_eq!(samples("# HELP x\n\n   \n# TYPE x counter\n").count(), 0);
        assert_eq!(samples("a 1\r\nb 2\r\n").flatten().count(), 2);
    }
}
