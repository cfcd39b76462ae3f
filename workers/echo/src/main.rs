//! `warren-echo`: the echo worker binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_runtime::worker_main(warren_echo::MANIFEST, |_settings| {
        Ok(warren_echo::EchoHandler)
    })
}
