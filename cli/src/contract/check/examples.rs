//! The examples folder: one folder per request type (`<type>/`), in it one file per
//! example, named for the outcome it promises: `ok-….json` (the type's result) or
//! `fault-<code>-….json` (a `dev.warren.fault.v1` with that code).

use std::path::{Path, PathBuf};

/// What an example's file name promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Promise {
    /// `ok-….json`: the request type's result.
    Result,
    /// `fault-<code>-….json` (or `fault-<code>.json`): a fault with this code.
    Fault(String),
}

/// What a file name must look like, for the row of one that does not.
pub(super) const NAMING_RULE: &str =
    "an example is named ok-<name>.json or fault-<code>-<name>.json (code in snake_case)";

/// The promise of the example file `file_name`, or why it makes none ([`NAMING_RULE`]).
pub(super) fn promise_of(file_name: &str) -> Result<Promise, String> {
    let not_named = || NAMING_RULE.to_owned();
    let stem = file_name.strip_suffix(".json").ok_or_else(not_named)?;
    if let Some(name) = stem.strip_prefix("ok-") {
        return if name.is_empty() {
            Err(not_named())
        } else {
            Ok(Promise::Result)
        };
    }
    let rest = stem.strip_prefix("fault-").ok_or_else(not_named)?;
    let code = rest.split_once('-').map_or(rest, |(code, _name)| code);
    let snake_case = code
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if code.is_empty() || !snake_case || !code.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(not_named());
    }
    Ok(Promise::Fault(code.to_owned()))
}

/// One type folder of the examples folder and its example files, both sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TypeFolder {
    /// The folder's name: the request type its examples are sent as.
    pub(super) message_type: String,
    /// Its `*.json` files: name and path.
    pub(super) files: Vec<(String, PathBuf)>,
}

/// Why the examples folder cannot be checked at all (a usage error).
#[derive(Debug, thiserror::Error)]
pub(super) enum FolderError {
    /// It cannot be read (missing, not a folder, no permission).
    #[error("cannot read the examples folder {path}: {source}")]
    Unreadable {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds no example.
    #[error("no examples in {0}: expected <type>/ok-….json or <type>/fault-<code>-….json files")]
    Empty(PathBuf),
    /// `--only` names a type it has no folder for.
    #[error("no folder {0} in {1}")]
    NoSuchType(String, PathBuf),
}

/// The type folders of `examples` (every folder in it; files beside them are not
/// examples), only those named in `only` when it is not empty. An error when the folder
/// cannot be read, a type of `only` has no folder, or no folder has a `*.json` file.
pub(super) fn type_folders(
    examples: &Path,
    only: &[String],
) -> Result<Vec<TypeFolder>, FolderError> {
    let unreadable = |path: &Path| {
        let path = path.to_owned();
        move |source| FolderError::Unreadable { path, source }
    };
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(examples).map_err(unreadable(examples))? {
        let entry = entry.map_err(unreadable(examples))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let message_type = entry.file_name().to_string_lossy().into_owned();
        if !only.is_empty() && !only.contains(&message_type) {
            continue;
        }
        let mut files = Vec::new();
        for file in std::fs::read_dir(&path).map_err(unreadable(&path))? {
            let file = file.map_err(unreadable(&path))?;
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !file.path().is_dir() {
                files.push((name, file.path()));
            }
        }
        files.sort();
        folders.push(TypeFolder {
            message_type,
            files,
        });
    }
    folders.sort_by(|a, b| a.message_type.cmp(&b.message_type));
    if let Some(missing) = only
        .iter()
        .find(|wanted| !folders.iter().any(|folder| &folder.message_type == *wanted))
    {
        return Err(FolderError::NoSuchType(
            missing.clone(),
            examples.to_owned(),
        ));
    }
    if folders.iter().all(|folder| folder.files.is_empty()) {
        return Err(FolderError::Empty(examples.to_owned()));
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Folder;

    #[test]
    fn a_file_name_promises_a_result_or_a_fault_code() {
        assert_eq!(promise_of("ok-hello.json"), Ok(Promise::Result));
        assert_eq!(promise_of("ok-one-apple-in-eur.json"), Ok(Promise::Result));
        for (name, code) in [
            (
                "fault-invalid_payload-not-an-object.json",
                "invalid_payload",
            ),
            ("fault-out_of_stock-test-sku.json", "out_of_stock"),
            ("fault-internal-processor-error.json", "internal"),
            ("fault-internal.json", "internal"),
            ("fault-code2-x.json", "code2"),
        ] {
            assert_eq!(
                promise_of(name),
                Ok(Promise::Fault(code.to_owned())),
                "{name}"
            );
        }
    }

    #[test]
    fn other_file_names_are_refused_with_the_rule() {
        for name in [
            "hello.json",
            "ok-.json",
            "ok.json",
            "ok-hello.txt",
            "fault-.json",
            "fault--x.json",
            "fault-Out_Of_Stock-x.json",
            "fault-out of stock-x.json",
            "fault-_x-y.json",
            "failure-x.json",
        ] {
            let error = promise_of(name).expect_err(name);
            assert!(error.contains(NAMING_RULE), "{name}: {error}");
        }
    }

    #[test]
    fn folders_and_files_are_listed_sorted_and_only_json_files_count() {
        let folder = Folder::new("contract-check", "examples");
        folder.write("dev.b.v1/ok-z.json", "{}");
        folder.write("dev.b.v1/fault-x-a.json", "{}");
        folder.write("dev.b.v1/README.md", "{}");
        folder.write("dev.a.v1/ok-a.json", "{}");
        folder.write("README.md", "{}");
        std::fs::create_dir_all(folder.0.join("dev.c.v1")).expect("an empty folder");
        let folders = type_folders(&folder.0, &[]).expect("folders");
        let listed: Vec<(&str, Vec<&str>)> = folders
            .iter()
            .map(|type_folder| {
                let names = type_folder
                    .files
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect();
                (type_folder.message_type.as_str(), names)
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("dev.a.v1", vec!["ok-a.json"]),
                ("dev.b.v1", vec!["fault-x-a.json", "ok-z.json"]),
                ("dev.c.v1", vec![]),
            ]
        );

        let only = type_folders(&folder.0, &["dev.b.v1".to_owned()]).expect("only b");
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].message_type, "dev.b.v1");
        let missing = type_folders(&folder.0, &["dev.d.v1".to_owned()]).expect_err("no d");
        assert!(matches!(missing, FolderError::NoSuchType(ref name, _) if name == "dev.d.v1"));
        let empty = type_folders(&folder.0, &["dev.c.v1".to_owned()]).expect_err("c is empty");
        assert!(matches!(empty, FolderError::Empty(_)), "{empty}");
    }

    #[test]
    fn a_missing_or_empty_examples_folder_is_an_error() {
        let folder = Folder::new("contract-check", "examples");
        assert!(matches!(
            type_folders(&folder.0, &[]),
            Err(FolderError::Empty(_))
        ));
        let missing = folder.0.join("nope");
        let error = type_folders(&missing, &[]).expect_err("missing");
        assert!(matches!(error, FolderError::Unreadable { .. }), "{error}");
        assert!(error.to_string().contains("nope"), "{error}");
    }
}
