//! The `warren-tally` binary rejects impossible settings and failpoints before it
//! connects.
//!
//! (Also makes `cargo test --workspace` build the binary that the end-to-end suite runs.)

use std::process::Command;

fn tally() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warren-tally"))
}

#[test]
fn prefetch_zero_is_rejected_with_exit_code_2() {
    let output = tally()
        .args(["--prefetch", "0"])
        .output()
        .expect("run warren-tally");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("worker.prefetch"), "{stderr}");
}

#[test]
fn an_unknown_failpoint_stops_the_worker_at_start() {
    let store_dir = std::env::temp_dir().join(format!("warren-tally-{}", uuid::Uuid::new_v4()));
    let output = tally()
        .env("WARREN_FAILPOINTS", "explode_now:1")
        .env("WARREN_STORE__DIR", &store_dir)
        // Nothing listens there: the worker must fail before it tries to connect.
        .env("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("WARREN_LOG", "error")
        .output()
        .expect("run warren-tally");
    assert_eq!(output.status.code(), Some(1));
    let logged = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(logged.contains("explode_now"), "{logged}");
    let _ = std::fs::remove_dir_all(&store_dir);
}
