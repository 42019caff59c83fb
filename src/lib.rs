//! `anonymize`: stream production tables through per-column rules into staging.
//!
//! Data flows one way: source → pipeline → transform → sink. `rules` turns the rules file into a
//! validated plan and binds it to the source's tables; `transform` holds the pure runtime
//! transformers; `copy` is the COPY text codec; `cli` is the thin command-line layer.

pub mod audit;
pub mod buffers;
pub mod cli;
pub mod command;
pub mod copy;
pub mod db;
pub mod diagnostic;
pub mod endpoint;
pub mod error;
pub mod external;
pub mod fixtures;
pub mod interrupt;
pub mod pipeline;
pub mod rules;
pub mod schema;
pub mod sink;
pub mod source;
pub mod sql;
pub mod subset;
pub mod transform;
