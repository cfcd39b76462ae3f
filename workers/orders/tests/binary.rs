//! The `warren-orders` binary rejects impossible settings before it connects.
//!
//! (Also makes `cargo test --workspace` build the binary that `warren up` and the
//! end-to-end suite run.)

use std::process::Command;

#[test]
fn prefetch_zero_is_rejected_with_exit_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_warren-orders"))
        .args(["--prefetch", "0"])
        .output()
        .expect("run warren-orders");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("worker.prefetch"), "{stderr}");
}
