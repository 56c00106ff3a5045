//! Builds the exec trampoline (`src/exec/trampoline.S`) that the Linux
//! executor embeds: a 4 KiB file, assembled and linked by the C
//! compiler that links Rust programs on Linux anyway. Elsewhere, or for
//! another architecture, the file is empty and the executor execs the
//! program directly (spec/linux-backend.md).

use std::path::PathBuf;
use std::process::Command;

/// The executor's step number of the exec (`EXEC_STEP` in exec/oci.rs).
const EXEC_STEP: u32 = 15;

fn main() {
    println!("cargo:rerun-if-changed=src/exec/trampoline.S");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("trampoline");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        std::fs::write(&out, b"").expect("write an empty trampoline");
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args([
            "-nostdlib",
            "-static",
            "-s",
            "-Wl,--build-id=none",
            "-Wl,-z,noexecstack",
            &format!("-DEXEC_STEP={EXEC_STEP}"),
            "-o",
        ])
        .arg(&out)
        .arg("src/exec/trampoline.S")
        .status()
        .unwrap_or_else(|e| panic!("running {cc} for the exec trampoline: {e}"));
    assert!(status.success(), "{cc} failed to build the exec trampoline");
}
