//! Reading a message's `data` argument: inline JSON, `@file`, or `-` for stdin.

use std::io::Read;

use anyhow::Context;
use serde_json::value::RawValue;

/// Reads and checks the JSON `data` named by `argument`.
pub fn read_data(argument: &str) -> anyhow::Result<Box<RawValue>> {
    let text = if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read data from stdin")?;
        text
    } else if let Some(path) = argument.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read data from {path}"))?
    } else {
        argument.to_owned()
    };
    serde_json::from_str::<Box<RawValue>>(text.trim())
        .with_context(|| format!("data is not JSON: {}", abbreviate(&text)))
}

fn abbreviate(text: &str) -> String {
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inline_and_file_data() {
        assert_eq!(
            read_data(r#" {"a": 1} "#).expect("inline").get(),
            r#"{"a": 1}"#
        );
        let path = std::env::temp_dir().join(format!("warren-input-{}.json", std::process::id()));
        std::fs::write(&path, "[1,2]\n").expect("write");
        let argument = format!("@{}", path.display());
        assert_eq!(read_data(&argument).expect("file").get(), "[1,2]");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn rejects_what_is_not_json() {
        let error = read_data("{hello}").expect_err("not json");
        assert!(error.to_string().contains("not JSON"));
        assert!(read_data("@/nonexistent/warren.json").is_err());
    }
}
