//! The `warren-echo` binary rejects impossible settings before it connects.
//!
//! (Also makes `cargo test --workspace` build the binary that the end-to-end suite runs.)

use std::process::Command;

fn echo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warren-echo"))
}

#[test]
fn prefetch_zero_is_rejected_with_exit_code_2() {
    let output = echo()
        .args(["--prefetch", "0"])
        .output()
        .expect("run warren-echo");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("worker.prefetch"), "{stderr}");
}

#[test]
fn an_invalid_broker_url_is_rejected_with_exit_code_2() {
    let output = echo()
        .env("WARREN_AMQP_URL", "http://not-amqp")
        .output()
        .expect("run warren-echo");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("amqp.url"), "{stderr}");
}
