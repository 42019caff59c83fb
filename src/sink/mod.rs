//! Where rows go. Sinks know nothing of rules: they receive finished bytes.

pub mod dump;
pub mod postgres;
pub mod swap;
