//! `gen`: a tiny build-time tool that runs inside wasm during a wharf `RUN`
//! step.
//!
//! `gen PATH TEXT...` writes the text (multiple words are joined with spaces)
//! plus a trailing newline to PATH, then removes `/tmp-remove-me` if present,
//! which shows that a build step can also delete files from the image.

use std::fs;
use std::io::ErrorKind;
use std::process;

const REMOVE_ME: &str = "/tmp-remove-me";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((path, words)) = args.split_first() else {
        eprintln!("usage: gen PATH TEXT...");
        process::exit(2);
    };

    let contents = format!("{}\n", words.join(" "));
    if let Err(err) = fs::write(path, contents) {
        eprintln!("gen: cannot write {path}: {err}");
        process::exit(1);
    }
    println!("gen: wrote {path}");

    match fs::remove_file(REMOVE_ME) {
        Ok(()) => println!("gen: removed {REMOVE_ME}"),
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => {
            eprintln!("gen: cannot remove {REMOVE_ME}: {err}");
            process::exit(1);
        }
    }
}
