//! Link-time settings for the `wharf` executable.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=wharf.order");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    // Pack relative relocations (DT_RELR, glibc >= 2.36, binutils >= 2.38):
    // the dynamic loader then reads a few KiB instead of ~1 MiB of
    // relocation entries at every start, which is a noticeable share of a
    // cached `wharf run` (spec/decisions/0008-startup-cost.md).
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    // Lay out the functions a cached run executes side by side at the start
    // of `wharf`'s code, so that starting it touches some 15 code pages
    // instead of about 110 (decision 0008; benches/order.sh writes the
    // list). Only LLD reads an ordering file: rustc links x86_64 Linux with
    // its bundled LLD unless the build chooses another linker.
    if uses_bundled_lld() {
        let order =
            std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("wharf.order");
        println!(
            "cargo:rustc-link-arg-bin=wharf=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Symbols the list names but the build lacks (a function renamed
        // since it was written) are expected: not a warning.
        println!("cargo:rustc-link-arg-bin=wharf=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc links with its own LLD: its default for
/// `x86_64-unknown-linux-gnu`, unless the flags pick a linker.
fn uses_bundled_lld() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let linker_env = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace('-', "_")
    );
    println!("cargo:rerun-if-env-changed={linker_env}");
    target == "x86_64-unknown-linux-gnu"
        && std::env::var_os(linker_env).is_none()
        && !["fuse-ld", "linker", "link-self-contained"]
            .iter()
            .any(|f| flags.contains(f))
}
