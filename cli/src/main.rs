//! `wharf`: runs local images itself; every other command goes to
//! `wharf-full` (see the crate documentation).

fn main() -> std::process::ExitCode {
    wharf_cli::app::main_run_first()
}
