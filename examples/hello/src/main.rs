//! Minimal wharf guest (WASI preview 1 core module).
//!
//! Prints a greeting, any arguments after argv[0], and the value of the
//! `GREETING` environment variable when it is set.

use std::env;

fn main() {
    println!("Hello from wharf!");

    let args: Vec<String> = env::args().skip(1).collect();
    if !args.is_empty() {
        println!("args: {}", args.join(" "));
    }

    if let Ok(greeting) = env::var("GREETING") {
        println!("greeting: {greeting}");
    }
}
