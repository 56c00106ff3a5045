//! Benchmarks for wharf: see benches/README.md.
