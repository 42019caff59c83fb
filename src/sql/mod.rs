//! SQL as a dump writes it: a lexer, psql's statement boundaries, constants, and the judgement of
//! each statement (what may pass, what is data, what carries a secret). Pure text processing: no
//! database, no rules.

pub mod expr;
pub mod lexer;
pub mod literal;
pub mod split;
pub mod statement;
