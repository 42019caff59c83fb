//! What a deparsed SQL expression calls (functions, operators, casts), read with the lexer: for
//! judging a `where` filter's plan and a view's definition against the catalog's volatility.

use std::collections::BTreeSet;

use crate::sql::lexer::{self, Kind};

/// Words followed by `(` in a deparsed expression that are SQL syntax, not calls of a function the
/// catalog lists by that name.
const SYNTAX_WORDS: &[&str] = &[
    "any",
    "all",
    "some",
    "array",
    "row",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "exists",
    "case",
    "cast",
    "trim",
    "in",
    "not",
    "and",
    "or",
    "values",
    "treat",
    "filter",
    "over",
    "within",
    "grouping",
    "xmlconcat",
    "xmlelement",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
    "subplan",
    "initplan",
    "hashed",
    "collate",
    "is",
    "distinct",
    "from",
    "operator",
    "json_object",
    "json_array",
    "json_scalar",
    "json_serialize",
];

/// The functions, operators and casts an expression (as the server deparsed it) calls.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// (schema if written, name)
    pub functions: BTreeSet<(Option<String>, String)>,
    pub operators: BTreeSet<String>,
    /// Type names cast to.
    pub casts: BTreeSet<String>,
}

/// Words that continue a multi-word type name after a cast.
const TYPE_WORDS: &[&str] = &["varying", "precision", "with", "without", "time", "zone"];

/// What a deparsed expression calls, read with the SQL lexer.
pub fn calls(expr: &str) -> Calls {
    let text = expr.as_bytes();
    let toks: Vec<lexer::Token> = match lexer::tokens(text, true) {
        Ok(t) => t.into_iter().filter(lexer::significant).collect(),
        Err(_) => return Calls::default(),
    };
    let name = |t: &lexer::Token| -> Option<String> {
        match t.kind {
            Kind::Word => lexer::word(text, t).map(|w| w.into_owned()),
            Kind::QuotedIdent => crate::sql::statement::unquote_ident(&text[t.start..t.end]),
            _ => None,
        }
    };
    let mut out = Calls::default();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        match t.kind {
            Kind::Cast => {
                // A type: words and dots, then perhaps modifiers in parentheses and brackets.
                let mut parts = Vec::new();
                i += 1;
                while let Some(n) = toks.get(i).and_then(&name) {
                    parts.push(n);
                    i += 1;
                    if toks.get(i).map(|t| t.kind) == Some(Kind::Dot) {
                        i += 1;
                    } else if toks
                        .get(i)
                        .filter(|t| t.kind == Kind::Word)
                        .and_then(|t| lexer::word(text, t))
                        .is_some_and(|w| TYPE_WORDS.contains(&w.as_ref()))
                    {
                        // `character varying`, `timestamp with time zone`; not `IS NULL`.
                        continue;
                    } else {
                        break;
                    }
                }
                if toks.get(i).map(|t| t.kind) == Some(Kind::Open) {
                    let mut depth = 0;
                    while let Some(t) = toks.get(i) {
                        match t.kind {
                            Kind::Open => depth += 1,
                            Kind::Close => depth -= 1,
                            _ => {}
                        }
                        i += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
                if !parts.is_empty() {
                    out.casts.insert(parts.join(" "));
                }
                continue;
            }
            Kind::Op => {
                out.operators
                    .insert(String::from_utf8_lossy(&text[t.start..t.end]).into_owned());
            }
            Kind::Word | Kind::QuotedIdent
                if toks.get(i + 1).map(|t| t.kind) == Some(Kind::Open) =>
            {
                if let Some(f) = name(&t) {
                    let schema = (i >= 2 && toks[i - 1].kind == Kind::Dot)
                        .then(|| name(&toks[i - 2]))
                        .flatten();
                    if schema.is_some() || !SYNTAX_WORDS.contains(&f.as_str()) {
                        out.functions.insert((schema, f));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}
