//! The message types of the fleet's workers, one file per worker. A new worker's types
//! go in a file of their own, named here three times: its module, its re-export, and
//! its catalogue.

mod echo;
mod inventory;
mod orders;
mod payments;
mod shipping;
mod tally;

pub use echo::*;
pub use inventory::*;
pub use orders::*;
pub use payments::*;
pub use shipping::*;
pub use tally::*;

use crate::catalogue::Entry;

/// Every worker's part of the catalogue.
pub(crate) const CATALOGUES: &[&[Entry]] = &[
    echo::CATALOGUE,
    orders::CATALOGUE,
    inventory::CATALOGUE,
    payments::CATALOGUE,
    shipping::CATALOGUE,
    tally::CATALOGUE,
];
