//! The arguments of `warren token`.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::parse_duration;

/// `--token` of `warren request`, `publish` and `load`.
#[derive(Debug, clap::Args)]
pub struct TokenArg {
    /// A token proving who sends (a JWT, or @file holding one), on every message, in its
    /// x-warren-token header: workers with auth.required refuse a message without a
    /// valid one, with the fault `unauthorized`. `warren token issue` makes one; its
    /// subject also names the reply queue (`warren.reply.<subject>.…`), and for `load`,
    /// issue it for the whole run.
    #[arg(
        long = "token",
        env = "WARREN_TOKEN",
        hide_env_values = true,
        value_name = "JWT|@FILE"
    )]
    pub argument: Option<String>,
}

impl TokenArg {
    /// The token given, read (from its file for `@FILE`) and checked for a token's
    /// shape; `None` without `--token`.
    pub fn read(&self) -> anyhow::Result<Option<warren_runtime::Token>> {
        self.argument
            .as_deref()
            .map(super::read_token_argument)
            .transpose()
    }
}

/// Arguments of `warren token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub(super) command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum TokenCommand {
    /// Sign a token with a private key and print it (for `--token`).
    Issue(IssueArgs),
    /// Make an Ed25519 key pair: the private key in DIR/KID.pem (mode 0600), its public
    /// key added to DIR/jwks.json (the key set workers read: auth.keys_file).
    Keygen(KeygenArgs),
    /// Take a key out of a key set (the last step of a rollover).
    Retire(RetireArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct IssueArgs {
    /// The private key's PEM file (Ed25519 PKCS#8 signs with EdDSA, RSA with RS256).
    #[arg(long, value_name = "FILE")]
    pub(super) key: PathBuf,
    /// The id of the key in the workers' key set (the token's `kid`).
    #[arg(long)]
    pub(super) kid: String,
    /// Whom the token is for (`sub`): a person or a service.
    #[arg(long = "sub", value_name = "SUBJECT")]
    pub(super) subject: String,
    /// A scope the token carries (`scope`), e.g. tally:write; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub(super) scopes: Vec<String>,
    /// How long the token is valid, e.g. 15m or 1h: long enough for the whole pipeline
    /// of every request sent with it, retries included.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub(super) ttl: Duration,
    /// The issuer (`iss`) [default: auth.issuer].
    #[arg(long)]
    pub(super) issuer: Option<String>,
    /// The audience (`aud`) [default: auth.audience].
    #[arg(long)]
    pub(super) audience: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct KeygenArgs {
    /// The folder of the key set (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(super) out: PathBuf,
    /// The new key's id [default: today's date (UTC), e.g. 2026-11-27].
    #[arg(long)]
    pub(super) kid: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct RetireArgs {
    /// The key set's file, e.g. keys/jwks.json.
    #[arg(long = "keys-file", value_name = "FILE")]
    pub(super) keys_file: PathBuf,
    /// The id of the key to take out.
    #[arg(long)]
    pub(super) kid: String,
}
