//! # nasop: the operator and the CLI
//!
//! This crate grows into the Kubernetes operator (reconcilers for `ArchitectureSearch`,
//! `ChildTrial` and `LatencyProbe`), the search strategies and the local runner. So far it
//! holds the CLI's pure parts: manifest checking and the search-space tool.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod latency_tool;
pub mod manifest;
pub mod schema;
pub mod space_tool;
