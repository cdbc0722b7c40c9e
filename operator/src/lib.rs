//! # nasop: the operator and the CLI
//!
//! This crate grows into the Kubernetes operator (reconcilers for `ArchitectureSearch`,
//! `ChildTrial` and `LatencyProbe`), the search strategies and the local runner. So far it
//! holds the search strategies (ask/tell, [`strategy`]), their benchmark on tabular data
//! ([`bench_search`]) and the CLI's pure parts: manifest checking, the search-space tool and
//! the latency-model tool.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench_search;
pub mod cli;
pub mod commands;
pub mod latency_tool;
pub mod local;
pub mod manifest;
pub mod plots;
pub mod schema;
pub mod search;
pub mod space_tool;
pub mod strategy;
pub mod trial;
