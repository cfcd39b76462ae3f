//! Which workers to watch: the metrics endpoints `warren up` lists for Prometheus in
//! `<run folder>/prometheus/targets*.json` (`targets.json`, and `targets-<pid>.json`
//! for each `warren up --add-instances`), in the `file_sd` format:
//! `[{"targets": ["127.0.0.1:40001"], "labels": {"worker": "echo"}}, …]`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The folder of the discovery files in the run folder.
const PROMETHEUS_FOLDER: &str = "prometheus";
/// The largest discovery file read; `warren up` writes a few hundred bytes per worker.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The most targets watched; the rest are left out (and said so).
pub(super) const MAX_TARGETS: usize = 1000;
/// The longest address taken from a file.
const MAX_ADDRESS_BYTES: usize = 255;

/// The run folder: `--run-dir` when given, else the one `warren up` uses
/// ([`crate::common::run_folder`]).
pub(super) fn run_folder(given: Option<&Path>) -> PathBuf {
    given.map_or_else(crate::common::run_folder, Path::to_path_buf)
}

/// The folder of the discovery files of `run_folder`.
pub(super) fn targets_folder(run_folder: &Path) -> PathBuf {
    run_folder.join(PROMETHEUS_FOLDER)
}

/// One metrics endpoint of one instance of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Target {
    /// The `worker` label.
    pub(super) worker: String,
    /// `host:port`.
    pub(super) address: String,
}

/// The targets found, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Listing {
    /// Sorted by worker then address, without duplicates.
    pub(super) targets: Vec<Target>,
    /// Each file or entry that could not be read, and why.
    pub(super) problems: Vec<String>,
}

/// One group of a `file_sd` file.
#[derive(Debug, Deserialize)]
struct Group {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// Every target of the discovery files in `folder`. A missing folder, an unreadable or
/// malformed file, an entry without a worker label: each is a problem, and the rest is
/// read.
pub(super) fn list(folder: &Path) -> Listing {
    let mut listing = Listing::default();
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            listing.problems.push(format!(
                "no folder {} (is `warren up` running? --run-dir names its run folder)",
                folder.display()
            ));
            return listing;
        }
        Err(error) => {
            listing
                .problems
                .push(format!("cannot list {}: {error}", folder.display()));
            return listing;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(is_targets_file_name)
        })
        .collect();
    files.sort();
    for path in files {
        match read_file(&path) {
            Ok(text) => match parse(&text) {
                Ok((targets, problems)) => {
                    listing.targets.extend(targets);
                    listing.problems.extend(
                        problems
                            .into_iter()
                            .map(|problem| format!("{}: {problem}", path.display())),
                    );
                }
                Err(problem) => listing
                    .problems
                    .push(format!("{}: {problem}", path.display())),
            },
            Err(problem) => listing
                .problems
                .push(format!("{}: {problem}", path.display())),
        }
    }
    listing.targets.sort();
    listing.targets.dedup();
    if listing.targets.len() > MAX_TARGETS {
        listing.problems.push(format!(
            "{} targets listed: only the first {MAX_TARGETS} are watched",
            listing.targets.len()
        ));
        listing.targets.truncate(MAX_TARGETS);
    }
    listing
}

/// Whether a file name is one Prometheus reads as `targets*.json`.
fn is_targets_file_name(name: &str) -> bool {
    name.starts_with("targets") && name.ends_with(".json")
}

/// The text of a discovery file, if it is a file of a sensible size.
fn read_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| error.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(text)
}

/// The targets of one file's text, and the problems of its entries; an error when the
/// text is not a `file_sd` list at all.
fn parse(text: &str) -> Result<(Vec<Target>, Vec<String>), String> {
    let groups: Vec<Group> =
        serde_json::from_str(text).map_err(|error| format!("not a targets list: {error}"))?;
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for group in groups {
        let Some(worker) = group.labels.get("worker").filter(|name| !name.is_empty()) else {
            if !group.targets.is_empty() {
                problems.push(format!(
                    "{} target(s) without a worker label left out",
                    group.targets.len()
                ));
            }
            continue;
        };
        for address in group.targets {
            if is_plausible_address(&address) {
                targets.push(Target {
                    worker: worker.clone(),
                    address,
                });
            } else {
                problems.push(format!("{address:?} is not host:port"));
            }
        }
    }
    Ok((targets, problems))
}

/// Whether `address` looks like `host:port`: not too long, no blanks or control
/// characters, a port number after the last `:`.
fn is_plausible_address(address: &str) -> bool {
    address.len() <= MAX_ADDRESS_BYTES
        && !address
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        && address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
impl Target {
    /// A target of `worker` at `address`, for tests.
    pub(super) fn new(worker: &str, address: &str) -> Target {
        Target {
            worker: worker.to_owned(),
            address: address.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(worker: &str, address: &str) -> Target {
        Target::new(worker, address)
    }

    #[test]
    fn reads_what_warren_up_writes() {
        let (targets, problems) = parse(
            r#"[
  {"targets": ["127.0.0.1:40001"], "labels": {"worker": "echo"}},
  {"targets": ["127.0.0.1:40002", "[::1]:40003"], "labels": {"worker": "tally", "x": "y"}}
]"#,
        )
        .expect("a list");
        assert_eq!(
            targets,
            [
                target("echo", "127.0.0.1:40001"),
                target("tally", "127.0.0.1:40002"),
                target("tally", "[::1]:40003")
            ]
        );
        assert!(problems.is_empty());
        assert_eq!(parse("[]").expect("empty"), (Vec::new(), Vec::new()));
    }

    #[test]
    fn bad_entries_are_problems_and_bad_files_errors() {
        let (targets, problems) = parse(
            r#"[{"targets": ["a:1"]}, {"targets": ["b", "c:99999", "d :1", "e:2"], "labels": {"worker": "w"}}]"#,
        )
        .expect("a list");
        assert_eq!(targets, [target("w", "e:2")]);
        assert_eq!(problems.len(), 4, "{problems:?}");
        for text in ["", "{}", "[1]", "[{\"targets\": \"a:1\"}]", "\u{0}"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn lists_every_targets_file_of_the_folder() {
        let folder =
            std::env::temp_dir().join(format!("warren-top-targets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).expect("a folder");
        let write =
            |name: &str, text: &str| std::fs::write(folder.join(name), text).expect("a file");
        write(
            "targets.json",
            r#"[{"targets": ["127.0.0.1:2"], "labels": {"worker": "tally"}}]"#,
        );
        write(
            "targets-4242.json",
            r#"[{"targets": ["127.0.0.1:1", "127.0.0.1:2"], "labels": {"worker": "echo"}},
                {"targets": ["127.0.0.1:2"], "labels": {"worker": "tally"}}]"#,
        );
        write("targets.json.new", "half written");
        write("targets-broken.json", "[{");
        write(
            "other.json",
            r#"[{"targets": ["127.0.0.1:3"], "labels": {"worker": "x"}}]"#,
        );
        let listing = list(&folder);
        std::fs::remove_dir_all(&folder).expect("clean up");
        assert_eq!(
            listing.targets,
            [
                target("echo", "127.0.0.1:1"),
                target("echo", "127.0.0.1:2"),
                target("tally", "127.0.0.1:2")
            ]
        );
        assert_eq!(listing.problems.len(), 1, "{:?}", listing.problems);
        assert!(listing.problems[0].contains("targets-broken.json"));

        let missing = list(&folder);
        assert!(missing.targets.is_empty());
        assert!(missing.problems[0].starts_with("no folder"), "{missing:?}");
    }

    #[test]
    fn the_run_folder_given_wins() {
        assert_eq!(
            run_folder(Some(Path::new("/srv/fleet"))),
            PathBuf::from("/srv/fleet")
        );
        assert_eq!(
            targets_folder(Path::new("/srv/fleet")),
            PathBuf::from("/srv/fleet/prometheus")
        );
    }
}
