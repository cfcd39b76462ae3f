//! `docs/asyncapi.yaml` held to the code: what the document says (its messages, channels,
//! operations and examples, by the id rules its header states) against the catalogue,
//! the workers' manifests, `docs/examples/`, and the topology a running fleet declares.
//!
//! Each check returns the problems it finds, in words, so a test can run it on the real
//! document (no problems) and on an edited copy (the problem the edit made):
//! [`problems`] against the code (`code`), [`topology_problems`] against a running fleet
//! (`topology`).

mod code;
mod topology;

pub use code::problems;
pub use topology::{Declared, topology_problems};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The exchange commands are published to.
pub const COMMANDS: &str = "warren.commands";
/// The exchange events are published to.
pub const EVENTS: &str = "warren.events";
/// The exchange outcomes are published to.
pub const REPLIES: &str = "warren.replies";
/// The fault every request may end in.
pub const FAULT: &str = "dev.warren.fault.v1";
/// The event every worker's runtime announces a fault with.
pub const REQUEST_FAILED: &str = "dev.warren.request.failed.v1";

/// The id of the message (and of the routing-key channel) of `message_type`, and of the
/// channel of a queue: the name with each `.` replaced by `_`.
pub fn id(name: &str) -> String {
    name.replace('.', "_")
}

/// What a worker's manifest says it consumes and produces.
#[derive(Debug, Clone)]
pub struct WorkerContract {
    /// The worker's name.
    pub name: String,
    /// The command types it consumes.
    pub commands: Vec<String>,
    /// The event types it consumes.
    pub events: Vec<String>,
    /// The types it produces.
    pub produces: Vec<String>,
}

/// The document, parsed.
#[derive(Debug)]
pub struct Document {
    root: Yaml,
}

impl Document {
    /// Parses the document's text.
    pub fn parse(text: &str) -> Result<Document, String> {
        let mut documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
        if documents.len() != 1 {
            return Err(format!("{} YAML documents, not one", documents.len()));
        }
        Ok(Document {
            root: documents.remove(0),
        })
    }

    /// Reads and parses the document at `path`.
    ///
    /// # Panics
    /// When it cannot be read or parsed.
    pub fn read(path: &Path) -> Document {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        Document::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// The node at `path` (map keys), following a `$ref` to this document at each step.
    pub(crate) fn at(&self, path: &[&str]) -> Option<&Yaml> {
        let mut node = &self.root;
        for key in path {
            node = self.follow(node);
            node = node.as_hash()?.get(&Yaml::String((*key).to_owned()))?;
        }
        Some(self.follow(node))
    }

    /// `node`, or what its `$ref` (`#/…`, within this document) points at.
    fn follow<'a>(&'a self, node: &'a Yaml) -> &'a Yaml {
        let mut node = node;
        for _ in 0..8 {
            let Some(reference) = reference_of(node) else {
                return node;
            };
            let Some(pointer) = reference.strip_prefix("#/") else {
                return node;
            };
            let mut target = &self.root;
            for part in pointer.split('/') {
                match target
                    .as_hash()
                    .and_then(|hash| hash.get(&Yaml::String(part.to_owned())))
                {
                    Some(next) => target = next,
                    None => return node,
                }
            }
            node = target;
        }
        node
    }

    /// The keys of the map at `path`.
    pub(crate) fn keys(&self, path: &[&str]) -> BTreeSet<String> {
        self.at(path)
            .and_then(Yaml::as_hash)
            .map(|hash| {
                hash.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The string at `path`.
    pub(crate) fn text(&self, path: &[&str]) -> Option<&str> {
        self.at(path).and_then(Yaml::as_str)
    }
}

/// The `$ref` of a node that is one.
pub(crate) fn reference_of(node: &Yaml) -> Option<&str> {
    node.as_hash()?
        .get(&Yaml::String("$ref".to_owned()))?
        .as_str()
}

/// The `$ref`s of a list of references (`messages:` of an operation or reply).
pub(crate) fn references(node: Option<&Yaml>) -> BTreeSet<String> {
    node.and_then(Yaml::as_vec)
        .map(|list| {
            list.iter()
                .filter_map(|item| reference_of(item).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A YAML value as JSON.
pub fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::String(text) => Value::from(text.as_str()),
        Yaml::Boolean(value) => Value::from(*value),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(hash) => Value::Object(
            hash.iter()
                .filter_map(|(key, value)| Some((key.as_str()?.to_owned(), to_json(value))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// Every example file: (type, name without `.json`) → its data.
///
/// # Panics
/// When the folder or a file cannot be read, or a file is not JSON.
pub fn example_files(folder: &Path) -> BTreeMap<(String, String), Value> {
    let mut examples = BTreeMap::new();
    for type_folder in std::fs::read_dir(folder).expect("docs/examples") {
        let type_folder = type_folder.expect("an entry").path();
        let message_type = type_folder
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a type")
            .to_owned();
        for file in std::fs::read_dir(&type_folder).expect("a type folder") {
            let path = file.expect("an entry").path();
            let name = path
                .file_stem()
                .and_then(|name| name.to_str())
                .expect("a name")
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("an example");
            let data: Value = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            examples.insert((message_type.clone(), name), data);
        }
    }
    examples
}
