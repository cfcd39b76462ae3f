//! `warren-inventory`: the inventory worker binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_runtime::worker_main(warren_inventory::MANIFEST, |settings| {
        Ok(warren_inventory::InventoryHandler::open(
            &settings.store.dir,
        )?)
    })
}
