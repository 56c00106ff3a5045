//! End-to-end tests: each drives the real `wharf` binary on a fresh store
//! root, with the real example guests from `examples/`.

mod harness;
mod registry_harness;

mod build;
mod daemon;
mod images;
mod lifecycle;
mod linux;
mod network;
mod registry;
mod run;
mod sandbox;
mod serve;
