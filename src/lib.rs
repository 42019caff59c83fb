//! `anonymize`: stream production tables through per-column rules into staging.
//!
//! Data flows one way: source → pipeline → transform → sink. `rules` turns the rules file into a
//! validated plan; `transform` holds the pure runtime transformers; `copy` is the COPY text codec.

pub mod transform;
pub mod rules;
