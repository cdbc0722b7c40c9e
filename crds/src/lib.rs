//! # nasop-crds: the API of nasop
//!
//! Pure data and logic, no I/O:
//! - [`space`]: the three search spaces (NASNet cells, MnasNet's factorized hierarchical space,
//!   NAS-Bench-201 cells), their genotypes (JSON, schema, canonical string form, stable hash,
//!   validation), uniform sampling, single-decision mutation and the decision view used by the
//!   controller policy;
//! - [`api`]: the custom resources `ArchitectureSearch`, `ChildTrial` and `LatencyProbe`
//!   (group `nasop.dev`, version `v1alpha1`) as `kube::CustomResource` types;
//! - [`result`]: the result document a trainer reports (termination message, exit codes).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// `#[kube(printcolumn(name = .., type_ = ..), printcolumn(..))]` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod api;
pub mod latency;
pub mod result;
pub mod reward;
pub mod space;

pub use space::{
    Decision, Genotype, GenotypeError, GenotypeHash, SearchSpace, SpaceError, SpaceKind,
};
