//! `wasm-baseline FILE.cwasm [ARGS...]`: the least work needed to run a
//! precompiled WASI preview 1 command module, with the engine and store set
//! up exactly as wharf sets them up (see `engine` and `prepare_store` in
//! runtime/src/exec/wasm.rs). wharf's own overhead on a cached run is
//! measured against this program.
//!
//! The guest gets inherited stdout and stderr and `argv = [FILE, ARGS...]`;
//! no environment, no preopened directories, no stdin. The process exits
//! with the guest's exit code (0 when `_start` returns), or 1 with a message
//! on stderr when loading or running fails.

// The workspace denies unsafe code; `Module::deserialize_file` is unsafe
// because it trusts the file to be compiled code wasmtime itself produced.
// The benchmark script only passes files that wharf or this wasmtime wrote.
#![allow(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// Same configuration as wharf's `engine(false)`: wharf only turns fuel on
/// when a run asks for an instruction limit, and `run hello` does not.
fn engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(false);
    config.wasm_component_model(true);
    Engine::new(&config)
}

/// Loads and runs the module; `Ok` holds the guest's exit code.
fn run(path: &Path, args: &[String]) -> wasmtime::Result<i32> {
    let engine = engine()?;
    // SAFETY: see the crate-level `allow(unsafe_code)` comment; wasmtime
    // still checks that the file matches this engine's version and settings.
    let module = unsafe { Module::deserialize_file(&engine, path) }?;

    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(path.display().to_string());
    argv.extend(args.iter().cloned());
    let wasi = WasiCtxBuilder::new()
        .inherit_stdout()
        .inherit_stderr()
        .args(&argv)
        .build_p1();

    let mut store = Store::new(&engine, wasi);
    // As wharf: a deadline of one epoch that traps. Nothing ever increments
    // the epoch here, so it only costs the checks compiled into the code.
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();

    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: wasm-baseline FILE.cwasm [ARGS...]");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    match run(Path::new(&path), &rest) {
        // Exit statuses are 8 bits wide; keep the low byte as a shell would.
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("wasm-baseline: {e:#}");
            ExitCode::FAILURE
        }
    }
}
