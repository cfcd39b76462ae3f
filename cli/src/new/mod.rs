//! `warren new worker <name>`: the scaffold of a new worker, in a checkout of warren.
//!
//! Writes the worker's crate (`workers/<name>/`: manifest, handler with its unit tests,
//! the three-line binary, the binary's test), its message types
//! (`messages/src/types/<name>.rs`, named in `messages/src/types/mod.rs`) and its compose
//! service. Nothing else needs to know about it: the workspace takes every `workers/*`
//! crate and `warren up` runs every worker binary it finds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Arguments of `warren new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    #[command(subcommand)]
    what: New,
}

#[derive(Debug, clap::Subcommand)]
enum New {
    /// A new worker: its crate, its message types and its compose service.
    Worker {
        /// The worker's name: a lowercase letter, then lowercase letters, digits and '-'.
        #[arg(value_parser = crate::common::parse_worker_name)]
        name: String,
        /// The checkout of warren to write into (default: the one around the current
        /// folder).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

/// The files of a new worker, relative to the checkout, with their text.
#[derive(Debug)]
struct Scaffold {
    /// New files: path and contents.
    files: Vec<(PathBuf, String)>,
    /// `messages/src/types/mod.rs` with the new module named.
    types_module: String,
    /// `compose.yaml` with the new service.
    compose: String,
    /// compose's Prometheus configuration with the new worker's target.
    compose_prometheus: String,
}

/// Runs `warren new …`.
pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let New::Worker { name, root } = args.what;
    let root = match root {
        Some(root) => root,
        None => find_checkout(&std::env::current_dir()?)?,
    };
    let scaffold = scaffold(&root, &name)?;
    for (path, text) in &scaffold.files {
        let path = root.join(path);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("created  {}", path.display());
    }
    for (path, text) in [
        (TYPES_MODULE, &scaffold.types_module),
        (COMPOSE, &scaffold.compose),
        (COMPOSE_PROMETHEUS, &scaffold.compose_prometheus),
    ] {
        let path = root.join(path);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("updated  {}", path.display());
    }
    // The templates are formatted for a short name; rustfmt makes any name fit.
    let formatted = std::process::Command::new("cargo")
        .args([
            "fmt",
            "-p",
            &format!("warren-{name}"),
            "-p",
            "warren-messages",
        ])
        .current_dir(&root)
        .status();
    if !formatted.is_ok_and(|status| status.success()) {
        println!("(could not run `cargo fmt`: run it before you commit)");
    }
    println!(
        "\nNext: cargo build -p warren-cli -p warren-{name}, then \
         target/debug/warren up --only {name} and, in another terminal, \
         target/debug/warren request dev.warren.{name}.v1 '{{\"text\":\"hello\"}}'.\n\
         Document the new types before you commit (the contract tests fail until you do): \
         cargo run -p warren-cli -- schema --write docs, then their entries in \
         docs/asyncapi.yaml and an example under docs/examples/dev.warren.{name}.v1/.\n\
         docs/writing-a-worker.md says what to change."
    );
    Ok(ExitCode::SUCCESS)
}

const TYPES_MODULE: &str = "messages/src/types/mod.rs";
const COMPOSE: &str = "compose.yaml";
const COMPOSE_PROMETHEUS: &str = "config/prometheus/compose.yml";

/// The checkout of warren that holds `folder`: the nearest folder up from it with the
/// files a scaffold writes into.
fn find_checkout(folder: &Path) -> anyhow::Result<PathBuf> {
    folder
        .ancestors()
        .find(|candidate| {
            candidate.join(TYPES_MODULE).is_file() && candidate.join("workers").is_dir()
        })
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "{} is not inside a checkout of warren (no {TYPES_MODULE} above it); \
                 run this in one, or pass --root",
                folder.display()
            )
        })
}

/// The worker's type prefix: `order-book` → `OrderBook`.
fn type_prefix(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut characters = part.chars();
            characters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + characters.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `template` with `{name}`, `{Type}` and `{crate}` filled in.
fn fill(template: &str, name: &str) -> String {
    template
        .replace("{name}", name)
        .replace("{Type}", &type_prefix(name))
        .replace("{crate}", &format!("warren_{}", name.replace('-', "_")))
}

/// What `warren new worker <name>` writes into the checkout at `root`.
fn scaffold(root: &Path, name: &str) -> anyhow::Result<Scaffold> {
    let crate_folder = Path::new("workers").join(name);
    if root.join(&crate_folder).exists() {
        bail!("{} exists already", root.join(&crate_folder).display());
    }
    let module = name.replace('-', "_");
    let types_file = Path::new("messages/src/types").join(format!("{module}.rs"));
    if root.join(&types_file).exists() {
        bail!("{} exists already", root.join(&types_file).display());
    }
    let files = vec![
        (
            crate_folder.join("Cargo.toml"),
            fill(include_str!("templates/Cargo.toml.txt"), name),
        ),
        (
            crate_folder.join("src/lib.rs"),
            fill(include_str!("templates/lib.rs.txt"), name),
        ),
        (
            crate_folder.join("src/main.rs"),
            fill(include_str!("templates/main.rs.txt"), name),
        ),
        (
            crate_folder.join("tests/binary.rs"),
            fill(include_str!("templates/binary.rs.txt"), name),
        ),
        (
            types_file,
            fill(include_str!("templates/types.rs.txt"), name),
        ),
    ];
    let types_module = std::fs::read_to_string(root.join(TYPES_MODULE))
        .with_context(|| format!("cannot read {TYPES_MODULE}"))?;
    let compose = std::fs::read_to_string(root.join(COMPOSE))
        .with_context(|| format!("cannot read {COMPOSE}"))?;
    let compose_prometheus = std::fs::read_to_string(root.join(COMPOSE_PROMETHEUS))
        .with_context(|| format!("cannot read {COMPOSE_PROMETHEUS}"))?;
    Ok(Scaffold {
        files,
        types_module: name_module(&types_module, &module)?,
        compose: add_service(
            &compose,
            &fill(include_str!("templates/compose.yaml.txt"), name),
        )?,
        compose_prometheus: add_scrape_target(&compose_prometheus, name)?,
    })
}

/// `types_module` (`messages/src/types/mod.rs`) with `module` named: declared,
/// re-exported, and its catalogue listed.
fn name_module(types_module: &str, module: &str) -> anyhow::Result<String> {
    let mut lines: Vec<String> = types_module.lines().map(str::to_owned).collect();
    let last =
        |lines: &[String], prefix: &str| lines.iter().rposition(|line| line.starts_with(prefix));
    let declared = last(&lines, "mod ").context("no `mod …;` line in the types module")?;
    lines.insert(declared + 1, format!("mod {module};"));
    let exported =
        last(&lines, "pub use ").context("no `pub use …::*;` line in the types module")?;
    lines.insert(exported + 1, format!("pub use {module}::*;"));
    let catalogues = lines
        .iter()
        .position(|line| line.contains("CATALOGUES") && line.contains("&["))
        .context("no CATALOGUES list in the types module")?;
    let end = lines[catalogues..]
        .iter()
        .position(|line| line.contains("];"))
        .map(|offset| catalogues + offset)
        .context("the CATALOGUES list does not end")?;
    if end == catalogues {
        // All on one line: `… = &[a::CATALOGUE, b::CATALOGUE];`.
        let list = &mut lines[end];
        let at = list
            .rfind("];")
            .context("the CATALOGUES list does not end")?;
        list.insert_str(at, &format!(", {module}::CATALOGUE"));
    } else {
        // One entry per line, as rustfmt writes a long list.
        lines.insert(end, format!("    {module}::CATALOGUE,"));
    }
    Ok(lines.join("\n") + "\n")
}

/// `compose` with `service` added after the last service (before the top-level
/// `volumes:`, if there is one).
fn add_service(compose: &str, service: &str) -> anyhow::Result<String> {
    if !compose.starts_with("services:\n") && !compose.contains("\nservices:\n") {
        bail!("{COMPOSE} has no services");
    }
    Ok(match compose.find("\nvolumes:\n") {
        Some(at) => format!("{}\n{service}{}", &compose[..at], &compose[at + 1..]),
        None => format!("{}\n\n{service}", compose.trim_end()),
    })
}

/// `prometheus` (compose's Prometheus configuration) with `name`'s metrics port added
/// to job `warren`, after its last target.
fn add_scrape_target(prometheus: &str, name: &str) -> anyhow::Result<String> {
    let job = prometheus
        .find("- job_name: warren\n")
        .with_context(|| format!("{COMPOSE_PROMETHEUS} has no job `warren`"))?;
    let job_end = prometheus[job + 1..]
        .find("- job_name:")
        .map_or(prometheus.len(), |offset| job + 1 + offset);
    let last_label = prometheus[job..job_end]
        .rfind("worker: ")
        .map(|offset| job + offset)
        .with_context(|| format!("job `warren` of {COMPOSE_PROMETHEUS} has no target"))?;
    let line_end = prometheus[last_label..]
        .find('\n')
        .map_or(prometheus.len(), |offset| last_label + offset + 1);
    let target =
        format!("      - targets: [\"{name}:9464\"]\n        labels:\n          worker: {name}\n");
    Ok(format!(
        "{}{target}{}",
        &prometheus[..line_end],
        &prometheus[line_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_worker_is_scraped_after_the_last_one() {
        let prometheus = "scrape_configs:\n  - job_name: warren\n    static_configs:\n      - targets: [\"echo:9464\"]\n        labels:\n          worker: echo\n\n  - job_name: rabbitmq\n    static_configs:\n      - targets: [\"rabbitmq:15692\"]\n";
        let added = add_scrape_target(prometheus, "order-book").expect("added");
        assert_eq!(
            added,
            "scrape_configs:\n  - job_name: warren\n    static_configs:\n      - targets: [\"echo:9464\"]\n        labels:\n          worker: echo\n      - targets: [\"order-book:9464\"]\n        labels:\n          worker: order-book\n\n  - job_name: rabbitmq\n    static_configs:\n      - targets: [\"rabbitmq:15692\"]\n"
        );
        assert!(add_scrape_target("scrape_configs: []\n", "x").is_err());
    }

    const TYPES: &str = "//! doc\n\nmod echo;\nmod tally;\n\npub use echo::*;\npub use tally::*;\n\nuse crate::catalogue::Entry;\n\n/// Every worker's part.\npub(crate) const CATALOGUES: &[&[Entry]] = &[echo::CATALOGUE, tally::CATALOGUE];\n";

    #[test]
    fn type_prefixes_are_camel_case() {
        assert_eq!(type_prefix("orders"), "Orders");
        assert_eq!(type_prefix("order-book-2"), "OrderBook2");
    }

    #[test]
    fn the_module_is_declared_exported_and_catalogued() {
        let named = name_module(TYPES, "order_book").expect("named");
        assert!(named.contains("mod tally;\nmod order_book;\n"), "{named}");
        assert!(
            named.contains("pub use tally::*;\npub use order_book::*;\n"),
            "{named}"
        );
        assert!(
            named.contains("&[echo::CATALOGUE, tally::CATALOGUE, order_book::CATALOGUE];"),
            "{named}"
        );
    }

    #[test]
    fn a_catalogue_list_on_several_lines_gets_a_line() {
        let types = "mod echo;\npub use echo::*;\npub(crate) const CATALOGUES: &[&[Entry]] = &[\n    echo::CATALOGUE,\n    tally::CATALOGUE,\n];\n";
        let named = name_module(types, "greeter").expect("named");
        assert!(
            named.ends_with("    tally::CATALOGUE,\n    greeter::CATALOGUE,\n];\n"),
            "{named}"
        );
    }

    #[test]
    fn the_service_goes_after_the_last_one() {
        let compose = "name: warren\n\nservices:\n  echo:\n    build: .\n\nvolumes:\n  data:\n";
        let added = add_service(compose, "  new:\n    build: .\n\n").expect("added");
        assert_eq!(
            added,
            "name: warren\n\nservices:\n  echo:\n    build: .\n\n  new:\n    build: .\n\nvolumes:\n  data:\n"
        );
    }

    #[test]
    fn templates_are_filled_and_nothing_existing_is_overwritten() {
        let root = std::env::temp_dir().join(format!("warren-new-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join("messages/src/types")).expect("folders");
        std::fs::create_dir_all(root.join("workers/echo")).expect("folders");
        std::fs::write(root.join(TYPES_MODULE), TYPES).expect("types");
        std::fs::write(root.join(COMPOSE), "services:\n  echo: {}\n").expect("compose");
        std::fs::create_dir_all(root.join("config/prometheus")).expect("folders");
        std::fs::write(
            root.join(COMPOSE_PROMETHEUS),
            "scrape_configs:\n  - job_name: warren\n    static_configs:\n      - targets: [\"echo:9464\"]\n        labels:\n          worker: echo\n",
        )
        .expect("compose's Prometheus");
        let made = scaffold(&root, "order-book").expect("scaffold");
        assert!(
            made.compose_prometheus
                .contains("targets: [\"order-book:9464\"]"),
            "{}",
            made.compose_prometheus
        );
        let lib = &made
            .files
            .iter()
            .find(|(path, _)| path.ends_with("src/lib.rs"))
            .expect("lib.rs")
            .1;
        assert!(lib.contains("pub struct OrderBookHandler;"), "{lib}");
        assert!(lib.contains("name: \"order-book\""), "{lib}");
        assert!(!lib.contains("{Type}") && !lib.contains("{name}"), "{lib}");
        let main = &made
            .files
            .iter()
            .find(|(path, _)| path.ends_with("src/main.rs"))
            .expect("main.rs")
            .1;
        assert!(main.contains("warren_order_book::MANIFEST"), "{main}");
        assert!(
            made.compose.contains("WORKER: order-book"),
            "{}",
            made.compose
        );
        assert!(
            scaffold(&root, "echo").is_err(),
            "an existing worker is refused"
        );
        assert!(find_checkout(&root.join("workers/echo")).is_ok());
        let _ = std::fs::remove_dir_all(&root);
    }
}
