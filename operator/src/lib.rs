//! # nasop: the operator and the CLI
//!
//! The Kubernetes operator (`nasop operator`, [`serve`]) with one module per kind:
//! [`search`] (ArchitectureSearch: the search core, status, policy store, reconciler), [`trial`]
//! (ChildTrial: plan, trainer Pod, reconciler) and [`probe`] (LatencyProbe: plan, probe Pod,
//! reconciler), sharing [`runtime`] (context, errors, apply helpers) and [`metrics`]. Beside
//! them: the search strategies ([`strategy`]), the local runner (`nasop run`, [`local`]), their
//! benchmark on tabular data ([`bench_search`]) and the CLI's pure parts.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench_search;
pub mod cli;
pub mod commands;
pub mod latency_tool;
pub mod local;
pub mod manifest;
pub mod metrics;
pub mod plots;
pub mod pods;
pub mod probe;
pub mod runtime;
pub mod schema;
pub mod search;
pub mod serve;
pub mod space_tool;
pub mod strategy;
pub mod trial;

#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
pub(crate) mod testing;
