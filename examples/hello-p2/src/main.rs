//! Minimal wharf guest built as a WASI preview 2 component.
//!
//! Prints a greeting and any arguments after argv[0].

use std::env;

fn main() {
    println!("Hello from a wharf component!");

    let args: Vec<String> = env::args().skip(1).collect();
    if !args.is_empty() {
        println!("args: {}", args.join(" "));
    }
}
