//! Link-time settings for the benchmark binaries: the same as the `wharf`
//! executable (cli/build.rs), so the baseline starts the same way.

fn main() {
    // Pack relative relocations (DT_RELR, glibc >= 2.36, binutils >= 2.38):
    // the dynamic loader then reads a few KiB instead of ~1 MiB of
    // relocation entries at every start, which is a noticeable share of a
    // cached `wharf run` (spec/decisions/0008-startup-cost.md).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
