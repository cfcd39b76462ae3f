//! `warren token keygen` and `warren token retire`: a key set's file, one key added or
//! taken out at a time, each change written aside and renamed over the file, so a worker
//! that reads it meanwhile (it looks every few seconds) sees the old set or the new one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;
use warren_runtime::auth::{KeySet, generate_ed25519_key};

use super::args::{KeygenArgs, RetireArgs};

/// The name of the key set's file in a keygen's folder.
const KEY_SET_FILE: &str = "jwks.json";

/// Makes a key pair: the private key in `<out>/<kid>.pem` (0600, never over an existing
/// file), the public key added to `<out>/jwks.json` (created when missing).
pub(super) fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let kid = match &args.kid {
        Some(kid) => kid.clone(),
        None => jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string(),
    };
    if kid.is_empty()
        || !kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || kid.starts_with('.')
        || kid.len() > 64
    {
        anyhow::bail!(
            "--kid {kid:?}: a key id is letters, digits, '-', '_' and '.', at most 64, and names a file"
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let key_set_path = args.out.join(KEY_SET_FILE);
    let mut key_set = read_key_set_document(&key_set_path, true)?;
    if key_ids(&key_set).iter().any(|existing| *existing == kid) {
        anyhow::bail!(
            "{} already has a key {kid:?}: choose another --kid",
            key_set_path.display()
        );
    }
    let generated = generate_ed25519_key(&kid).map_err(anyhow::Error::msg)?;
    let private_key_path = args.out.join(format!("{kid}.pem"));
    write_private_key(&private_key_path, &generated.private_key_pem)?;
    keys_mut(&mut key_set)?.push(generated.public_jwk);
    write_key_set(&key_set_path, &key_set)?;
    println!(
        "warren: wrote the private key {} (mode 0600: keep it secret) and added its public key \
         {kid:?} to {} (keys: {})",
        private_key_path.display(),
        key_set_path.display(),
        key_ids(&key_set).join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Takes the key `kid` out of the key set's file; the last key is never taken out.
pub(super) fn retire(args: &RetireArgs) -> anyhow::Result<ExitCode> {
    let mut key_set = read_key_set_document(&args.keys_file, false)?;
    let keys = keys_mut(&mut key_set)?;
    let before = keys.len();
    keys.retain(|key| key.get("kid").and_then(Value::as_str) != Some(args.kid.as_str()));
    if keys.len() == before {
        anyhow::bail!("{} has no key {:?}", args.keys_file.display(), args.kid);
    }
    if keys.is_empty() {
        anyhow::bail!(
            "{:?} is the last key of {}: add its successor first (warren token keygen)",
            args.kid,
            args.keys_file.display()
        );
    }
    write_key_set(&args.keys_file, &key_set)?;
    println!(
        "warren: took {:?} out of {} (keys: {}); workers stop accepting its tokens within \
         seconds",
        args.kid,
        args.keys_file.display(),
        key_ids(&key_set).join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The key set document at `path`; an empty one when it is missing and `may_be_missing`.
fn read_key_set_document(path: &Path, may_be_missing: bool) -> anyhow::Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let document: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            if !document.get("keys").is_some_and(Value::is_array) {
                anyhow::bail!("{} is not a key set: no \"keys\" array", path.display());
            }
            Ok(document)
        }
        Err(error) if may_be_missing && error.kind() == std::io::ErrorKind::NotFound => {
            Ok(serde_json::json!({ "keys": [] }))
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn keys_mut(document: &mut Value) -> anyhow::Result<&mut Vec<Value>> {
    document
        .get_mut("keys")
        .and_then(Value::as_array_mut)
        .context("not a key set: no \"keys\" array")
}

fn key_ids(document: &Value) -> Vec<&str> {
    document
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|key| key.get("kid").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `pem` to a new file `path`, readable by its owner only.
fn write_private_key(path: &Path, pem: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (is it there already?)", path.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Checks `document` is a key set workers accept, writes it aside and renames it over
/// `path`.
fn write_key_set(path: &Path, document: &Value) -> anyhow::Result<()> {
    let text = format!("{}\n", serde_json::to_string_pretty(document)?);
    KeySet::parse(&text).map_err(|error| anyhow::anyhow!("the new key set is refused: {error}"))?;
    let mut aside = PathBuf::from(path);
    aside.set_extension("json.new");
    std::fs::write(&aside, text).with_context(|| format!("cannot write {}", aside.display()))?;
    std::fs::rename(&aside, path)
        .with_context(|| format!("cannot rename {} to {}", aside.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Folder;

    #[test]
    fn keygen_adds_keys_and_retire_takes_them_out_never_the_last() {
        use std::os::unix::fs::PermissionsExt;
        let folder = Folder::new("token", "keys");
        let out = folder.0.join("keys");
        for kid in ["old", "new"] {
            keygen(&KeygenArgs {
                out: out.clone(),
                kid: Some(kid.to_owned()),
            })
            .expect("keygen");
        }
        let jwks = out.join(KEY_SET_FILE);
        let set = KeySet::read(&jwks).expect("a key set workers accept");
        assert_eq!(set.key_ids(), ["new", "old"]);
        let mode = std::fs::metadata(out.join("old.pem"))
            .expect("the private key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same kid again is refused, and nothing is overwritten.
        let again = keygen(&KeygenArgs {
            out: out.clone(),
            kid: Some("old".to_owned()),
        });
        assert!(again.is_err());
        assert!(
            keygen(&KeygenArgs {
                out: out.clone(),
                kid: Some("../escape".to_owned()),
            })
            .is_err()
        );
        retire(&RetireArgs {
            keys_file: jwks.clone(),
            kid: "old".to_owned(),
        })
        .expect("retire");
        assert_eq!(KeySet::read(&jwks).expect("a set").key_ids(), ["new"]);
        for kid in ["old", "new"] {
            assert!(
                retire(&RetireArgs {
                    keys_file: jwks.clone(),
                    kid: kid.to_owned(),
                })
                .is_err(),
                "{kid}"
            );
        }
    }
}
