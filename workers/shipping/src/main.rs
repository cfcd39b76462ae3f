//! `warren-shipping`: the shipping worker binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_runtime::worker_main(warren_shipping::MANIFEST, |settings| {
        Ok(warren_shipping::ShippingHandler::open(&settings.store.dir)?)
    })
}
