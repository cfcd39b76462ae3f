//! `warren types`: the catalogue, one message type per line with its versions.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use warren_messages::catalogue::{self, Entry};
use warren_messages::schema::kind_name;

/// Arguments of `warren types`.
#[derive(Debug, Args)]
pub struct TypesArgs {
    /// Print one JSON object per line (type, versions, kind, result, summary).
    #[arg(long)]
    json: bool,
}

/// One type family and its versions, newest first.
struct Family {
    name: &'static str,
    versions: Vec<&'static Entry>,
}

/// The catalogue's families in catalogue order, each with its versions newest first.
fn families() -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for entry in catalogue::entries() {
        match families
            .iter_mut()
            .find(|family| family.name == entry.family())
        {
            Some(family) => family.versions.push(entry),
            None => families.push(Family {
                name: entry.family(),
                versions: vec![entry],
            }),
        }
    }
    for family in &mut families {
        family
            .versions
            .sort_by_key(|entry| std::cmp::Reverse(entry.version()));
    }
    families
}

/// `warren types`. A reader that stops reading (`| head`) ends it quietly.
pub fn types(args: TypesArgs) -> anyhow::Result<ExitCode> {
    match write_types(&args, &mut std::io::stdout().lock()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        written => {
            written?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_types(args: &TypesArgs, out: &mut impl Write) -> std::io::Result<()> {
    let families = families();
    let width = families
        .iter()
        .map(|family| family.name.len())
        .max()
        .unwrap_or(0);
    for family in families {
        let newest = family.versions[0];
        let versions: Vec<String> = family
            .versions
            .iter()
            .map(|entry| match entry.upcast_to {
                Some(next) => format!(
                    "v{} (upcast to v{})",
                    entry.version(),
                    catalogue::split_version(next).1
                ),
                None => format!("v{}", entry.version()),
            })
            .collect();
        if args.json {
            let line = serde_json::json!({
                "type": family.name,
                "versions": family.versions.iter().map(|entry| serde_json::json!({
                    "type": entry.message_type,
                    "upcast_to": entry.upcast_to,
                })).collect::<Vec<_>>(),
                "kind": kind_name(newest.kind),
                "result": newest.result,
                "summary": newest.summary,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{name:<width$}  {kind:<7}  {versions}  {summary}",
                name = family.name,
                kind = kind_name(newest.kind),
                versions = versions.join(", "),
                summary = newest.summary,
            )?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_a_family_are_together_newest_first() {
        let families = families();
        let place = families
            .iter()
            .find(|family| family.name == "dev.warren.orders.place")
            .expect("orders.place");
        let versions: Vec<u32> = place.versions.iter().map(|entry| entry.version()).collect();
        assert_eq!(versions, [2, 1]);
        let count: usize = families.iter().map(|family| family.versions.len()).sum();
        assert_eq!(count, catalogue::entries().count());
    }

    #[test]
    fn each_family_is_one_line_with_its_versions() {
        let mut out = Vec::new();
        write_types(&TypesArgs { json: false }, &mut out).expect("written");
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(text.lines().count(), families().len());
        let place = text
            .lines()
            .find(|line| line.starts_with("dev.warren.orders.place "))
            .expect("orders.place");
        assert!(place.contains("command  v2, v1 (upcast to v2)"), "{place}");
        let mut out = Vec::new();
        write_types(&TypesArgs { json: true }, &mut out).expect("written");
        let first: serde_json::Value =
            serde_json::from_slice(out.split(|b| *b == b'\n').next().expect("a line"))
                .expect("JSON");
        assert_eq!(first["type"], "dev.warren.fault");
    }
}
