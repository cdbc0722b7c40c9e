//! The nasop trainer library: child networks of the three search spaces built with libtorch
//! (tch), datasets, training, and the result the trainer reports to the operator.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod args;
pub mod cli_probe;
pub mod cli_train;
pub mod data;
pub mod info;
pub mod net;
pub mod probe;
pub mod train;
