//! `warren-tally`: the tally worker binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    warren_runtime::worker_main(warren_tally::MANIFEST, |settings| {
        Ok(warren_tally::TallyHandler::open(&settings.store.dir)?)
    })
}
