//! `warren schema`: print a message type's JSON Schema, or write every schema and the
//! catalogue page into the docs folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use warren_messages::catalogue;
use warren_messages::schema::{catalogue_markdown, file_name, file_text};

/// Arguments of `warren schema`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["message_type", "write"]))]
pub struct SchemaArgs {
    /// The message type, with its version (`dev.warren.orders.place.v1`) or without
    /// (the newest version).
    message_type: Option<String>,
    /// Write every type's schema into DOCS/schemas/ (removing schemas of types no longer
    /// in the catalogue) and the catalogue page DOCS/messages.md. Run from the checkout:
    /// `warren schema --write docs`.
    #[arg(long, value_name = "DOCS")]
    write: Option<PathBuf>,
}

/// `warren schema`.
pub fn schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    if let Some(docs) = args.write {
        return write(&docs);
    }
    let name = args.message_type.unwrap_or_default();
    let Some(entry) = catalogue::latest(&name) else {
        eprintln!("warren: {name:?} is not in the catalogue; `warren types` lists it");
        return Ok(ExitCode::from(crate::common::EXIT_USAGE));
    };
    let mut out = std::io::stdout().lock();
    match out
        .write_all(file_text(entry).as_bytes())
        .and_then(|()| out.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Writes the schemas and the catalogue page; prints what changed.
fn write(docs: &Path) -> anyhow::Result<ExitCode> {
    let folder = docs.join("schemas");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let mut wanted = Vec::new();
    for entry in catalogue::entries() {
        let name = file_name(entry.message_type);
        write_if_changed(&folder.join(&name), &file_text(entry))?;
        wanted.push(name);
    }
    let listing =
        std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?;
    for file in listing {
        let file = file?;
        let name = file.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !wanted.contains(&name) {
            std::fs::remove_file(file.path())
                .with_context(|| format!("removing {}", file.path().display()))?;
            println!("removed {}", file.path().display());
        }
    }
    write_if_changed(&docs.join("messages.md"), &catalogue_markdown())?;
    Ok(ExitCode::SUCCESS)
}

fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
