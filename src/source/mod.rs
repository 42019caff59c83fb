//! Where rows come from. Sources know nothing of rules: they yield tables, columns and COPY rows.

pub mod dump;
pub mod filter;
pub mod postgres;
