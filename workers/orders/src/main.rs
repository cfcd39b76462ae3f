//! `warren-orders`: the orders worker binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_runtime::worker_main(warren_orders::MANIFEST, |settings| {
        Ok(warren_orders::OrdersHandler::open(&settings.store.dir)?)
    })
}
