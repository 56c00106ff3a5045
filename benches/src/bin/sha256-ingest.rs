//! `sha256-ingest hash FILE` hashes FILE through wharf's `HashingReader`
//! (the digest path every blob write and registry download goes through);
//! `sha256-ingest store ROOT FILE` ingests FILE into the store at ROOT
//! (hash, write, fsync, rename). Both print the digest, so the benchmark
//! script can compare them with `openssl dgst -sha256` and `sha256sum`.

use std::io::Read;
use std::process::ExitCode;

use wharf::digest::HashingReader;
use wharf::store::Store;

fn run(args: &[String]) -> Result<String, Box<dyn std::error::Error>> {
    match args {
        [mode, file] if mode == "hash" => {
            let mut r = HashingReader::new(std::fs::File::open(file)?);
            let mut buf = vec![0u8; 1 << 20];
            while r.read(&mut buf)? != 0 {}
            Ok(r.finish()?.0.to_string())
        }
        [mode, root, file] if mode == "store" => {
            let store = Store::open(root)?;
            let (d, _) = store.ingest(std::fs::File::open(file)?, None)?;
            Ok(d.to_string())
        }
        _ => Err("usage: sha256-ingest hash FILE | sha256-ingest store ROOT FILE".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(d) => {
            println!("{d}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sha256-ingest: {e}");
            ExitCode::FAILURE
        }
    }
}
