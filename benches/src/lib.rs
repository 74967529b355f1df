//! Criterion benchmarks of workload-auth; see BENCHMARKS.md.
