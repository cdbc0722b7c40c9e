//! The `ChildTrial` controller's pure parts: the trainer Pod it creates.

pub mod pod;
