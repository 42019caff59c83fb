//! What a `where` filter may say, judged on its own text before the server sees it.
//!
//! Planning an expression already runs its stable functions (constant folding for estimates), and
//! a stable built-in such as `table_to_xml` reads any table — or a view that calls anything — by
//! name. So a filter is first read with the SQL lexer against an allow-list: the table's own
//! columns, constants, operators of the built-in types, built-in casts, a list of pure built-in
//! functions, and the keywords of plain expressions. No subquery, no other table, no function of
//! the source's own schema, no name of any other object. Only then is it planned by the server
//! (which checks it is valid, and whose plan is checked again for volatile calls).

use std::collections::BTreeSet;

use crate::sql::lexer::{self, Kind};

/// Keywords of plain expressions.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "is",
    "null",
    "true",
    "false",
    "unknown",
    "in",
    "between",
    "symmetric",
    "like",
    "ilike",
    "similar",
    "to",
    "escape",
    "distinct",
    "from",
    "case",
    "when",
    "then",
    "else",
    "end",
    "interval",
    "date",
    "time",
    "timestamp",
    "with",
    "without",
    "zone",
    "at",
    "any",
    "all",
    "some",
    "array",
    "isnull",
    "notnull",
    "both",
    "leading",
    "trailing",
    "for",
    "as",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    // Fields of extract() and interval units.
    "century",
    "decade",
    "year",
    "years",
    "quarter",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "dow",
    "doy",
    "isodow",
    "isoyear",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "epoch",
    "millisecond",
    "milliseconds",
    "microsecond",
    "microseconds",
];

/// Built-in functions a filter may call: they read only their arguments (and the clock).
const FUNCTIONS: &[&str] = &[
    "abs",
    "age",
    "array_length",
    "array_position",
    "array_to_string",
    "btrim",
    "cardinality",
    "cast",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "coalesce",
    "concat",
    "concat_ws",
    "date_part",
    "date_trunc",
    "div",
    "extract",
    "floor",
    "greatest",
    "host",
    "initcap",
    "isfinite",
    "json_array_length",
    "json_extract_path_text",
    "json_typeof",
    "jsonb_array_length",
    "jsonb_extract_path_text",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "least",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "make_timestamptz",
    "masklen",
    "md5",
    "mod",
    "now",
    "nullif",
    "octet_length",
    "position",
    "power",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "rpad",
    "rtrim",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "strpos",
    "substr",
    "substring",
    "to_char",
    "to_date",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "trim",
    "trunc",
    "upper",
];

/// Built-in types a filter may cast to (words of multi-word names included).
const TYPES: &[&str] = &[
    "smallint",
    "int",
    "int2",
    "int4",
    "int8",
    "integer",
    "bigint",
    "numeric",
    "decimal",
    "real",
    "float",
    "float4",
    "float8",
    "double",
    "precision",
    "text",
    "varchar",
    "character",
    "varying",
    "char",
    "bool",
    "boolean",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "with",
    "without",
    "zone",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "inet",
    "cidr",
    "macaddr",
    "bytea",
];

/// Operators of the built-in types.
const OPERATORS: &[&str] = &[
    "=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||", "~~", "!~~", "~~*",
    "!~~*", "~", "~*", "!~", "!~*", "->", "->>", "#>", "#>>", "@>", "<@", "?", "?|", "?&", "&&",
    "<<", ">>", "<<=", ">>=",
];

/// Why a filter may not be used, or `None`. `columns` are the table's columns.
pub fn problem(filter: &str, columns: &[String]) -> Option<String> {
    let text = filter.as_bytes();
    let toks = match lexer::tokens(text, true) {
        Ok(t) => t,
        Err(_) => return Some("has an unterminated quote or comment".into()),
    };
    let toks: Vec<lexer::Token> = toks.into_iter().filter(|t| t.kind != Kind::Space).collect();
    let columns: BTreeSet<&str> = columns.iter().map(String::as_str).collect();
    let mut depth = 0i32;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let next = toks.get(i + 1).map(|t| t.kind);
        match t.kind {
            Kind::LineComment | Kind::BlockComment => {
                return Some("has a comment: write the filter without one".into())
            }
            Kind::Semicolon => return Some("has a `;`: a filter is one expression".into()),
            Kind::Backslash => return Some("has a backslash outside quotes".into()),
            Kind::Param | Kind::Colon => {
                return Some("has a parameter or a `:`, which a filter cannot use".into())
            }
            Kind::Dot => {
                return Some(
                    "names something with a dot: a filter uses the table's own columns only".into(),
                )
            }
            Kind::Open | Kind::OpenBracket => depth += 1,
            Kind::Close | Kind::CloseBracket => {
                depth -= 1;
                if depth < 0 {
                    return Some("closes a parenthesis it did not open".into());
                }
            }
            Kind::Number if lexer::junk(&text[t.start..t.end]) => {
                return Some("has a number with letters right after it".into())
            }
            Kind::Space | Kind::Str(_) | Kind::Number | Kind::Comma => {}
            Kind::Op => {
                let op = String::from_utf8_lossy(&text[t.start..t.end]);
                if !OPERATORS.contains(&op.as_ref()) {
                    return Some(format!(
                        "uses the operator {op}, which is not one of the built-in types' operators a filter may use"
                    ));
                }
            }
            Kind::Cast => {
                // A type: words (multi-word names), then perhaps (n) and [].
                i += 1;
                let mut words = 0;
                while let Some(w) = toks.get(i).filter(|t| t.kind == Kind::Word) {
                    let w = lexer::word(text, w).unwrap_or_default();
                    if !TYPES.contains(&w.as_ref()) {
                        break;
                    }
                    words += 1;
                    i += 1;
                }
                if words == 0 {
                    return Some(
                        "casts to a type that is not one of the built-in types a filter may use"
                            .into(),
                    );
                }
                continue;
            }
            Kind::QuotedIdent => {
                let name = crate::sql::statement::unquote_ident(&text[t.start..t.end]);
                if next == Some(Kind::Open) || !name.is_some_and(|n| columns.contains(n.as_str())) {
                    return Some(
                        "names something that is not a column of the table (a quoted name)".into(),
                    );
                }
            }
            Kind::Word => {
                let w = lexer::word(text, &t).unwrap_or_default();
                if next == Some(Kind::Open) {
                    if !FUNCTIONS.contains(&w.as_ref())
                        && !matches!(
                            w.as_ref(),
                            "in" | "any" | "all" | "some" | "not" | "and" | "or"
                        )
                    {
                        return Some(shown_call(&w));
                    }
                } else if !(KEYWORDS.contains(&w.as_ref())
                    || TYPES.contains(&w.as_ref())
                    || columns.contains(w.as_ref()))
                {
                    return Some(
                        "names something that is not a column of the table, a constant or a \
                         keyword of a plain expression (no subquery, no other table)"
                            .into(),
                    );
                }
            }
        }
        i += 1;
    }
    (depth != 0).then(|| "leaves a parenthesis open".to_string())
}

/// The message for a call of a function not on the list: named when it is a plain name.
fn shown_call(name: &str) -> String {
    let plain = name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    format!(
        "calls {}, which is not one of the built-in functions a filter may call (they read only \
         their arguments: lower, coalesce, date_trunc, now, …)",
        if plain {
            format!("{name}()")
        } else {
            "a function".into()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        ["id", "email", "created_at", "deleted_at", "Kind"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn plain_expressions_over_the_columns_pass() {
        for f in [
            "deleted_at IS NULL",
            "id > 10 AND email LIKE '%@corp.test'",
            "created_at >= now() - interval '90 days'",
            "created_at::date BETWEEN '2024-01-01' AND current_date",
            "lower(email) IN ('a', 'b') OR \"Kind\" = 'x'",
            "extract(year FROM created_at) = 2024",
            "coalesce(deleted_at, created_at) < timestamp '2024-01-01'",
            "id = ANY (ARRAY[1, 2, 3])",
            "deleted_at::timestamp with time zone IS NOT NULL",
        ] {
            assert_eq!(problem(f, &cols()), None, "{f}");
        }
    }

    #[test]
    fn anything_that_could_read_or_write_elsewhere_is_refused() {
        for f in [
            "id = (SELECT 1)",
            "EXISTS (SELECT 1 FROM orders)",
            "id IN (VALUES (1))",
            "dblink_exec('x', 'DROP TABLE t') IS NOT NULL",
            "lo_export(0, '/tmp/x') IS NOT NULL",
            "nextval('s') > 0",
            "table_to_xml('public.customers', true, false, '')::text <> ''",
            "has_column_privilege('public.customers', email, 'SELECT')",
            "email::regclass IS NOT NULL",
            "public.f(id) > 0",
            "\"f\"(id) > 0",
            "id ### 1",
            "other_column = 1",
            "id = 1; DROP TABLE t",
            "id = 1 -- x",
            "id = $1",
            "id = :v",
            "txid_current() > 0",
            "pg_sleep(1) IS NULL",
        ] {
            assert!(problem(f, &cols()).is_some(), "{f}");
        }
        // A name that could be a value is not quoted.
        let why = problem("\"john@x\"(id) > 0", &cols()).unwrap();
        assert!(!why.contains("john"), "{why}");
    }
}
