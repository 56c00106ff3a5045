//! The `wharf` command-line interface: a thin layer over the `wharf`
//! library, built as two executables.
//!
//! - `wharf` (src/main.rs) runs `wharf run` of a local image (wasm or
//!   Linux) or module itself and hands every other command to
//!   `wharf-full` beside it;
//! - `wharf-full` (src/full.rs) has every command.
//!
//! Both are the code below; the split only keeps what `wharf run` does not
//! need out of the executable it starts (spec/decisions/0008-startup-cost.md).

pub mod app;
pub mod commands;
