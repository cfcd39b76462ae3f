//! `warren-payments`: the payments worker binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_runtime::worker_main(warren_payments::MANIFEST, |settings| {
        Ok(warren_payments::PaymentsHandler::open(&settings.store.dir)?)
    })
}
