//! Property and model tests: pure code against reference models and
//! generated input, no API server (`cargo test --test props`).

#[path = "alloc_props.rs"]
mod alloc_props;
#[path = "fuzz_validation.rs"]
mod fuzz_validation;
#[path = "layout.rs"]
mod layout;
#[path = "ledger_model/main.rs"]
mod ledger_model;
