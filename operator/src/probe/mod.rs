//! The `LatencyProbe` kind: its probe Pod ([`pod`]), what it needs next ([`plan`]), and the
//! reconciler that carries that out ([`controller`]).

pub mod controller;
pub mod plan;
pub mod pod;
