//! Finding the fleet: the worker binaries beside `warren` (or in `--bin-dir`).
//!
//! The rule: a worker is a file of the binaries folder named `warren-<name>` (plus the
//! platform's executable suffix) that is a regular file (or a link to one) with an
//! execute bit set, and whose `<name>` passes the one worker-name rule
//! ([`check_worker_name`]). `warren` itself has no `-<name>`; what else cargo writes
//! beside the binaries (`warren-echo.d` dep-info files, `lib*.rlib`, the `deps/`,
//! `build/`, `examples/` folders where test, bench and example binaries go) fails the
//! name rule, the execute bit or the file test. A program that is not a worker must
//! therefore not be installed as `warren-<name>` beside `warren`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use warren_runtime::AMQP_URL_VARIABLES;
use warren_runtime::topology::check_worker_name;

use super::UpError;
use super::args::WorkerNames;

/// What every worker binary's file name starts with.
const WORKER_BINARY_PREFIX: &str = "warren-";

/// A worker binary found in the binaries folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundWorker {
    /// The worker's name (`echo` for `warren-echo`).
    pub worker_name: String,
    /// The binary.
    pub binary_path: PathBuf,
}

/// One worker binary to run, with its arguments and environment.
#[derive(Debug, Clone)]
pub struct WorkerProgram {
    /// The worker's name, used as the output prefix.
    pub worker_name: String,
    /// The binary to run.
    pub binary_path: PathBuf,
    /// Its command-line arguments.
    pub arguments: Vec<OsString>,
    /// Variables set for it, on top of what `warren up` has.
    pub environment: Vec<(OsString, OsString)>,
    /// Variables of `warren up`'s own environment it does not inherit.
    pub removed_environment: Vec<OsString>,
}

/// The folder of the running `warren` executable: where the worker binaries live in
/// `target/debug`, `target/release` and an install folder.
pub fn directory_of_current_executable() -> Result<PathBuf, UpError> {
    let executable_path = std::env::current_exe().map_err(UpError::NoBinaryDirectory)?;
    executable_path
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            UpError::NoBinaryDirectory(std::io::Error::other(format!(
                "{} has no parent folder",
                executable_path.display()
            )))
        })
}

/// The worker name a binary's file name stands for, if it is one by the rule.
fn worker_name_of(file_name: &OsStr) -> Option<&str> {
    let file_name = file_name.to_str()?;
    let stem = file_name.strip_suffix(std::env::consts::EXE_SUFFIX)?;
    let worker_name = stem.strip_prefix(WORKER_BINARY_PREFIX)?;
    check_worker_name(worker_name).ok()?;
    Some(worker_name)
}

/// Whether `path` is (or links to) a regular file with an execute bit set.
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Every worker binary in `binary_directory`, sorted by name.
///
/// # Errors
/// When the folder cannot be read, or holds no worker binary.
pub fn find_workers(binary_directory: &Path) -> Result<Vec<FoundWorker>, UpError> {
    let unreadable = |source| UpError::UnreadableBinaryDirectory {
        directory: binary_directory.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(binary_directory).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let file_name = entry.file_name();
        let Some(worker_name) = worker_name_of(&file_name) else {
            continue;
        };
        let binary_path = entry.path();
        if is_executable_file(&binary_path) {
            found.push(FoundWorker {
                worker_name: worker_name.to_owned(),
                binary_path,
            });
        }
    }
    if found.is_empty() {
        return Err(UpError::NoWorkersFound {
            directory: binary_directory.to_path_buf(),
        });
    }
    found.sort_by(|left, right| left.worker_name.cmp(&right.worker_name));
    Ok(found)
}

/// The workers `only` names, in its order, or all of `found` when it is `None`.
///
/// # Errors
/// When `only` names a worker that was not found.
pub fn select_workers(
    found: Vec<FoundWorker>,
    only: Option<&WorkerNames>,
    binary_directory: &Path,
) -> Result<Vec<FoundWorker>, UpError> {
    let Some(only) = only else {
        return Ok(found);
    };
    only.names
        .iter()
        .map(|name| {
            found
                .iter()
                .find(|worker| worker.worker_name == *name)
                .cloned()
                .ok_or_else(|| UpError::UnknownWorker {
                    name: name.clone(),
                    binary_directory: binary_directory.to_path_buf(),
                    found: found
                        .iter()
                        .map(|worker| worker.worker_name.clone())
                        .collect(),
                })
        })
        .collect()
}

/// What to run for each worker: `--prefetch N` when given, and `environment` for all,
/// without the variables `removed_environment` of `warren up`'s own.
pub fn worker_programs(
    workers: Vec<FoundWorker>,
    prefetch: Option<u16>,
    environment: &[(OsString, OsString)],
    removed_environment: &[OsString],
) -> Vec<WorkerProgram> {
    let mut arguments = Vec::new();
    if let Some(prefetch) = prefetch {
        arguments.push(OsString::from("--prefetch"));
        arguments.push(OsString::from(prefetch.to_string()));
    }
    workers
        .into_iter()
        .map(|worker| WorkerProgram {
            worker_name: worker.worker_name,
            binary_path: worker.binary_path,
            arguments: arguments.clone(),
            environment: environment.to_vec(),
            removed_environment: removed_environment.to_vec(),
        })
        .collect()
}

/// Runs every worker of `programs` under its own broker user: its URL from
/// `<credentials>/<worker>.url` (as `warren topology apply` writes it), no other URL
/// variable, and the shared exchanges only checked.
///
/// # Errors
/// A worker without a URL file there.
pub fn use_credentials(programs: &mut [WorkerProgram], credentials: &Path) -> Result<(), UpError> {
    for program in programs {
        let url_file = credentials.join(format!("{}.url", program.worker_name));
        if !url_file.is_file() {
            return Err(UpError::MissingCredentials {
                worker: program.worker_name.clone(),
                path: url_file,
            });
        }
        let is_url_variable =
            |variable: &OsString| AMQP_URL_VARIABLES.iter().any(|name| variable == name);
        program
            .environment
            .retain(|(variable, _)| !is_url_variable(variable));
        program.environment.extend([
            (
                OsString::from("WARREN_AMQP_URL_FILE"),
                url_file.into_os_string(),
            ),
            (
                OsString::from("WARREN_AMQP__DECLARE_EXCHANGES"),
                OsString::from("false"),
            ),
        ]);
        for variable in AMQP_URL_VARIABLES.map(OsString::from) {
            if !program.removed_environment.contains(&variable) {
                program.removed_environment.push(variable);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::Folder;
    use crate::up::args::parse_worker_names;

    /// A stand-in binary `name` in `folder`, of mode `mode`.
    fn binary(folder: &Folder, name: &str, mode: u32) -> PathBuf {
        let path = folder.write(name, "");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("set its mode");
        path
    }

    #[test]
    fn worker_names_follow_the_one_rule() {
        assert_eq!(worker_name_of(OsStr::new("warren-echo")), Some("echo"));
        assert_eq!(
            worker_name_of(OsStr::new("warren-orders2")),
            Some("orders2")
        );
        assert_eq!(worker_name_of(OsStr::new("warren-a-b")), Some("a-b"));
        for not_a_worker in [
            "warren",
            "warren-",
            "warren-echo.d",
            "warren-Echo",
            "warren-2fast",
            "warren_echo-0123abcd",
            "libwarren_echo.rlib",
            "echo",
        ] {
            assert_eq!(
                worker_name_of(OsStr::new(not_a_worker)),
                None,
                "{not_a_worker}"
            );
        }
    }

    #[test]
    fn only_executable_worker_binaries_are_found_in_name_order() {
        let folder = Folder::new("up", "discovery");
        let tally = binary(&folder, "warren-tally", 0o755);
        let echo = binary(&folder, "warren-echo", 0o755);
        let with_digits = binary(&folder, "warren-orders2", 0o700);
        binary(&folder, "warren", 0o755);
        binary(&folder, "warren-echo.d", 0o644);
        binary(&folder, "warren-notes", 0o644);
        binary(&folder, "warren-Upper", 0o755);
        std::fs::create_dir(folder.0.join("warren-folder")).expect("a folder");
        std::os::unix::fs::symlink(&echo, folder.0.join("warren-echo-link")).expect("a link");

        let found = find_workers(&folder.0).expect("workers");
        let names: Vec<&str> = found
            .iter()
            .map(|worker| worker.worker_name.as_str())
            .collect();
        assert_eq!(names, vec!["echo", "echo-link", "orders2", "tally"]);
        assert_eq!(found[0].binary_path, echo);
        assert_eq!(found[2].binary_path, with_digits);
        assert_eq!(found[3].binary_path, tally);
    }

    #[test]
    fn no_worker_binary_says_how_to_build_them() {
        let folder = Folder::new("up", "discovery");
        binary(&folder, "warren", 0o755);
        let error = find_workers(&folder.0).expect_err("no workers");
        assert!(matches!(error, UpError::NoWorkersFound { .. }));
        assert!(
            error.to_string().contains("cargo build --release"),
            "{error}"
        );
        let missing = find_workers(&folder.0.join("nope")).expect_err("no folder");
        assert!(matches!(missing, UpError::UnreadableBinaryDirectory { .. }));
    }

    #[test]
    fn only_selects_among_the_workers_found_in_its_order() {
        let found = vec![
            FoundWorker {
                worker_name: "echo".to_owned(),
                binary_path: PathBuf::from("/bin/warren-echo"),
            },
            FoundWorker {
                worker_name: "tally".to_owned(),
                binary_path: PathBuf::from("/bin/warren-tally"),
            },
        ];
        let directory = Path::new("/bin");
        let all = select_workers(found.clone(), None, directory).expect("all");
        assert_eq!(all, found);
        let only = parse_worker_names("tally,echo").expect("names");
        let selected = select_workers(found.clone(), Some(&only), directory).expect("both");
        assert_eq!(selected[0].worker_name, "tally");
        let unknown = parse_worker_names("echo,tallly").expect("names");
        let error = select_workers(found, Some(&unknown), directory).expect_err("unknown");
        assert!(matches!(&error, UpError::UnknownWorker { name, .. } if name == "tallly"));
        assert!(
            error
                .to_string()
                .contains("unknown worker `tallly`; the workers found in /bin are: echo, tally"),
            "{error}"
        );
    }

    #[test]
    fn credentials_give_each_worker_its_own_url_file_and_no_other_url() {
        let folder = Folder::new("up", "credentials");
        folder.write("echo.url", "amqp://warren-echo:secret@host/v\n");
        let found = |name: &str| FoundWorker {
            worker_name: name.to_owned(),
            binary_path: PathBuf::from(format!("/bin/warren-{name}")),
        };
        let environment = vec![
            (
                OsString::from("WARREN_AMQP_URL"),
                OsString::from("amqp://admin@h"),
            ),
            (
                OsString::from("WARREN_SUPERVISOR_PID"),
                OsString::from("42"),
            ),
        ];
        let mut programs = worker_programs(vec![found("echo")], None, &environment, &[]);
        use_credentials(&mut programs, &folder.0).expect("echo has a file");
        let echo = &programs[0];
        let url_file = folder.0.join("echo.url");
        assert_eq!(
            echo.environment,
            vec![
                (
                    OsString::from("WARREN_SUPERVISOR_PID"),
                    OsString::from("42")
                ),
                (
                    OsString::from("WARREN_AMQP_URL_FILE"),
                    url_file.into_os_string()
                ),
                (
                    OsString::from("WARREN_AMQP__DECLARE_EXCHANGES"),
                    OsString::from("false")
                ),
            ]
        );
        assert_eq!(
            echo.removed_environment,
            AMQP_URL_VARIABLES.map(OsString::from)
        );

        let mut programs = worker_programs(vec![found("echo"), found("tally")], None, &[], &[]);
        let error = use_credentials(&mut programs, &folder.0).expect_err("no tally.url");
        assert!(
            matches!(&error, UpError::MissingCredentials { worker, .. } if worker == "tally"),
            "{error}"
        );
        assert!(
            error.to_string().contains("tally.url is missing"),
            "{error}"
        );
    }

    #[test]
    fn prefetch_and_environment_go_to_every_worker() {
        let found = vec![
            FoundWorker {
                worker_name: "echo".to_owned(),
                binary_path: PathBuf::from("/bin/warren-echo"),
            },
            FoundWorker {
                worker_name: "tally".to_owned(),
                binary_path: PathBuf::from("/bin/warren-tally"),
            },
        ];
        let environment = vec![(
            OsString::from("WARREN_SUPERVISOR_PID"),
            OsString::from("42"),
        )];
        let programs = worker_programs(found, Some(12), &environment, &[]);
        assert_eq!(programs.len(), 2);
        assert_eq!(programs[1].worker_name, "tally");
        for program in &programs {
            assert_eq!(program.arguments, vec!["--prefetch", "12"]);
            assert_eq!(program.environment, environment);
        }
        let no_prefetch = worker_programs(
            vec![FoundWorker {
                worker_name: "echo".to_owned(),
                binary_path: PathBuf::from("/bin/warren-echo"),
            }],
            None,
            &[],
            &[OsString::from("WARREN_AMQP_URL_FILE")],
        );
        assert!(no_prefetch[0].arguments.is_empty());
        assert_eq!(no_prefetch[0].removed_environment, ["WARREN_AMQP_URL_FILE"]);
    }
}
