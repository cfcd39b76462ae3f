//! Settings from the environment: which setting a `WARREN_…` variable sets, values read
//! from the files `…_FILE` variables name, and those values kept out of error messages.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::{ConfigError, DEFAULTS, FILE_SUFFIX};

/// `text` with each of `file_contents` replaced by `***` where it is quoted (`"…"`,
/// `'…'`), and wherever it occurs when it is long enough not to be found by chance in
/// the words of a message. Case is ignored: the configuration's errors quote some values
/// lowercased.
pub(super) fn redact_file_contents(text: &str, file_contents: &[String]) -> String {
    const SHORTEST_REDACTED_ANYWHERE: usize = 6;
    let mut text = text.to_owned();
    for content in file_contents.iter().filter(|content| !content.is_empty()) {
        let mut spellings = vec![content.clone(), content.to_lowercase()];
        spellings.dedup();
        for spelling in &spellings {
            text = replace_ignoring_ascii_case(&text, &format!("{spelling:?}"), "\"***\"");
            text = replace_ignoring_ascii_case(&text, &format!("'{spelling}'"), "'***'");
            if spelling.chars().count() >= SHORTEST_REDACTED_ANYWHERE {
                text = replace_ignoring_ascii_case(&text, spelling, "***");
            }
        }
    }
    text
}

/// `text` with every occurrence of `needle`, in any ASCII case, replaced by `replacement`.
pub(super) fn replace_ignoring_ascii_case(text: &str, needle: &str, replacement: &str) -> String {
    if needle.is_empty() {
        return text.to_owned();
    }
    // ASCII case folding keeps every byte where it is, so positions in the folded text are
    // positions in `text`, on the same character boundaries.
    let folded_text = text.to_ascii_lowercase();
    let folded_needle = needle.to_ascii_lowercase();
    let mut result = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    for (start, _) in folded_text.match_indices(&folded_needle) {
        if start < copied_up_to {
            continue;
        }
        result.push_str(&text[copied_up_to..start]);
        result.push_str(replacement);
        copied_up_to = start + needle.len();
    }
    result.push_str(&text[copied_up_to..]);
    result
}

/// The setting a variable `WARREN_<name>` sets, if it sets one: the short forms, or
/// `<SECTION>__<KEY>` (`AMQP__TLS__CA_FILE` is `amqp.tls.ca_file`).
pub(super) fn setting_of_variable(name: &str) -> Option<String> {
    match name {
        "AMQP_URL" => Some("amqp.url".to_owned()),
        "LOG" => Some("log.filter".to_owned()),
        _ if name.contains("__") => Some(name.to_ascii_lowercase().replace("__", ".")),
        _ => None,
    }
}

/// Every setting there is (each one has a default), as dotted keys: `amqp.tls.ca_file`.
pub(super) fn known_settings() -> Result<BTreeSet<String>, ConfigError> {
    fn collect<'a>(
        prefix: &str,
        table: impl IntoIterator<Item = (&'a String, &'a config::Value)>,
        into: &mut BTreeSet<String>,
    ) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match &value.kind {
                config::ValueKind::Table(inner) => collect(&path, inner, into),
                _ => {
                    into.insert(path);
                }
            }
        }
    }
    let defaults: HashMap<String, config::Value> = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?;
    let mut settings = BTreeSet::new();
    collect("", &defaults, &mut settings);
    Ok(settings)
}

/// How a `WARREN_…` variable sets a setting.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SettingVariable {
    /// Its value is the setting's value.
    Value(String),
    /// Its value is the path of a file holding the setting's value; the variable that
    /// would give the value itself is named too.
    File {
        /// The setting.
        setting: String,
        /// The same variable without `_FILE`.
        value_variable: String,
    },
}

/// What the variable `variable` sets, if anything. `X_FILE` is a file when `X` names a
/// setting and `X_FILE` itself does not (`WARREN_AMQP__TLS__CA_FILE` is the setting
/// `amqp.tls.ca_file`, a path; `WARREN_AMQP__TLS__CA_FILE_FILE` a file holding that path).
pub(super) fn classify_variable(
    variable: &str,
    known: &BTreeSet<String>,
) -> Option<SettingVariable> {
    let name = variable.strip_prefix("WARREN_")?;
    let own_setting = setting_of_variable(name);
    if !own_setting
        .as_ref()
        .is_some_and(|setting| known.contains(setting))
        && let Some(base) = name.strip_suffix(FILE_SUFFIX)
        && let Some(setting) = setting_of_variable(base).filter(|s| known.contains(s))
    {
        return Some(SettingVariable::File {
            setting,
            value_variable: format!("WARREN_{base}"),
        });
    }
    own_setting.map(SettingVariable::Value)
}

/// The content of the file `path` that `variable` names, less one trailing newline (`\n`
/// or `\r\n`).
pub(super) fn read_setting_file(variable: &str, path: &str) -> Result<String, ConfigError> {
    let unreadable = |reason: String| ConfigError::UnreadableFile {
        variable: variable.to_owned(),
        path: PathBuf::from(path),
        reason,
    };
    if path.is_empty() {
        return Err(unreadable("the path is empty".to_owned()));
    }
    // The I/O error says why (not found, permission, not UTF-8), never what the file holds.
    let mut content =
        std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
    if content.ends_with("\r\n") {
        content.truncate(content.len() - 2);
    } else if content.ends_with('\n') {
        content.truncate(content.len() - 1);
    }
    Ok(content)
}
