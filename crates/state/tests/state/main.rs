//! Tests of the state rules through the public API: one per rule, determinism, and random
//! histories checked against invariants.

#![allow(clippy::unwrap_used)]

mod co_signatures;
mod determinism;
mod fixture;
mod rules;
