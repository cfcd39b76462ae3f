//! `warren token issue`: a token signed with a private key, printed for `--token`.

use std::process::ExitCode;

use warren_runtime::auth::{SigningKey, TokenRequest};
use warren_runtime::{Overrides, Settings};

use super::args::IssueArgs;

/// Signs a token as `args` say and prints it on stdout, alone on its line; what it says
/// (never the token) on stderr. The settings are read only for an issuer or an audience
/// not given.
pub(super) fn run(overrides: &Overrides, args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let key = SigningKey::read_pem_file(&args.key, &args.kid).map_err(anyhow::Error::msg)?;
    let settings = match (&args.issuer, &args.audience) {
        (Some(_), Some(_)) => None,
        _ => Some(crate::load_settings(overrides)?),
    };
    let from_settings =
        |pick: fn(&Settings) -> &String| settings.as_ref().map(pick).map_or("", String::as_str);
    let issuer = args
        .issuer
        .as_deref()
        .unwrap_or_else(|| from_settings(|settings| &settings.auth.issuer));
    let audience = args
        .audience
        .as_deref()
        .unwrap_or_else(|| from_settings(|settings| &settings.auth.audience));
    if args.subject.is_empty() {
        anyhow::bail!("--sub must not be empty");
    }
    let request = TokenRequest::new(&args.subject, &args.scopes, issuer, audience, args.ttl);
    let token = key.issue(&request).map_err(anyhow::Error::msg)?;
    println!("{}", token.as_str());
    eprintln!(
        "warren: a token for {:?} from {issuer:?} to {audience:?}, key {:?} ({:?}), scopes [{}], \
         valid for {:?}",
        args.subject,
        args.kid,
        key.algorithm(),
        args.scopes.join(" "),
        args.ttl
    );
    Ok(ExitCode::SUCCESS)
}
