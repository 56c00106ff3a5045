//! `wharf-full`: every `wharf` command (see the crate documentation).

fn main() -> std::process::ExitCode {
    wharf_cli::app::main_full()
}
