//! The `warren` binary's usage errors: clear messages and exit code 2, before any
//! broker is contacted.
//!
//! (Also makes `cargo test --workspace` build the binary that the end-to-end suite runs.)

use std::process::Command;

fn warren(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        // A port nothing listens on: these commands must fail before connecting.
        .env("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .output()
        .expect("run warren")
}

#[test]
fn help_lists_every_command() {
    let output = warren(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "up", "publish", "request", "load", "dlq", "logs", "tail", "new",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn data_that_is_not_json_is_a_usage_error() {
    let output = warren(&["request", "dev.warren.echo.v1", "{hello"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data is not JSON"), "{stderr}");
}

#[test]
fn impossible_flags_are_usage_errors() {
    for args in [
        &["request", "dev.warren.echo.v1", "{}", "--count", "0"][..],
        &["request", "dev.warren.echo.v1", "{}", "--timeout", "soon"][..],
        &["up", "--only", "nosuchworker"][..],
        &["up", "--prefetch", "0"][..],
    ] {
        let output = warren(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn an_unreachable_broker_is_exit_code_2() {
    let output = warren(&["publish", "dev.warren.echo.v1", "{}"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
