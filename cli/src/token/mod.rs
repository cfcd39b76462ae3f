//! `warren token`: development tokens and keys (docs/security.md, "Tokens"). `issue`
//! signs a token with a private key; `keygen` makes an Ed25519 key pair and adds its
//! public key to a key set; `retire` takes a key out of one. What `--token` of `request`,
//! `publish` and `load` reads is here too ([`read_token_argument`]).

mod args;
mod issue;
mod keys;

use std::process::ExitCode;

use anyhow::Context;
use warren_runtime::{Overrides, Token};

use args::TokenCommand;
pub use args::{TokenArg, TokenArgs};

/// Runs `warren token …`.
pub fn run(args: TokenArgs, overrides: &Overrides) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenCommand::Issue(args) => issue::run(overrides, &args),
        TokenCommand::Keygen(args) => keys::keygen(&args),
        TokenCommand::Retire(args) => keys::retire(&args),
    }
}

/// The token a `--token` argument names: the token itself, or `@file` holding it
/// (whitespace around it ignored). Only its shape is checked here; the workers verify
/// it. The error never quotes it.
pub(crate) fn read_token_argument(argument: &str) -> anyhow::Result<Token> {
    let text = match argument.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token from {path}"))?,
        None => argument.to_owned(),
    };
    Token::parse(&text).map_err(|error| anyhow::anyhow!("--token: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Folder;

    #[test]
    fn a_token_is_read_inline_or_from_a_file_and_never_quoted() {
        assert_eq!(
            read_token_argument(" aaa.bbb.ccc ")
                .expect("inline")
                .as_str(),
            "aaa.bbb.ccc"
        );
        let folder = Folder::new("token", "argument");
        let path = folder.write("token", "aaa.bbb.ccc\n");
        let from_file = read_token_argument(&format!("@{}", path.display())).expect("from a file");
        assert_eq!(from_file.as_str(), "aaa.bbb.ccc");
        let error = read_token_argument("secret-looking-garbage").expect_err("not a token");
        assert!(!error.to_string().contains("secret-looking"), "{error}");
        assert!(read_token_argument("@/nonexistent/warren-token").is_err());
    }
}
