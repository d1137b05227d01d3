//! End-to-end tests live in `it/` (one test binary, `cargo nextest run -p strata-tests`).
