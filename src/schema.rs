//! Names as PostgreSQL writes them: schema-qualified table names, quoting of identifiers, and
//! reading them back. Shared by the rules, the sources and the sinks; knows nothing of any of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A schema-qualified table name. Ordered so plans and reports list tables alphabetically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: &str, name: &str) -> Self {
        QualifiedName {
            schema: schema.to_string(),
            name: name.to_string(),
        }
    }

    /// Parse `table`, `schema.table` or their double-quoted forms (`"My Schema"."Table.1"`).
    pub fn parse(s: &str) -> Option<Self> {
        let parts = split_identifiers(s)?;
        match parts.as_slice() {
            [name] => Some(QualifiedName::new("public", name)),
            [schema, name] => Some(QualifiedName::new(schema, name)),
            _ => None,
        }
    }

    /// The key that names this table in a rules file (`customers`, `"billing.invoices"`).
    pub fn rules_key(&self) -> String {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if self.schema == "public" && plain(&self.name) {
            self.name.clone()
        } else {
            let quote = |s: &str| {
                if plain(s) {
                    s.to_string()
                } else {
                    format!("\\\"{}\\\"", s.replace('"', "\\\"\\\""))
                }
            };
            format!("\"{}.{}\"", quote(&self.schema), quote(&self.name))
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.name)
        )
    }
}

/// PostgreSQL keywords that are not "unreserved" (reserved, type/function and column-name ones, up to
/// PostgreSQL 17), sorted: as identifiers they must be quoted. Quoting one too many is harmless.
const KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// An SQL identifier, quoted when PostgreSQL would need it.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && KEYWORDS.binary_search(&s).is_err();
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// Split `a.b` / `"a"."b.c"` into identifiers; unquoted parts are kept as written.
pub fn split_identifiers(s: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// A table as the source has it: its name, its columns in COPY order, and the partitioned table it
/// belongs to (a partition without rules of its own takes its parent's). A database source also
/// knows each column's constraints and type; a dump does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTable {
    pub name: QualifiedName,
    pub columns: Vec<String>,
    pub partition_of: Option<QualifiedName>,
    pub meta: Option<Vec<ColumnMeta>>,
    /// Rows expected before copying, for progress: counted in a dump, the catalog's estimate in a
    /// database (None when it has none).
    pub rows: Option<u64>,
    /// The database the table is in, when the source says (a `\connect` in a pg_dumpall file, the
    /// database of a live source): rules under `[databases.NAME]` apply to it.
    pub database: Option<String>,
    /// A foreign table: never read, so its only rule is `skip = true`.
    pub foreign: bool,
    /// Each column's type as a dump's `CREATE TABLE` writes it (`integer`, `text[]`), where a
    /// dump says and `meta` is not known: conditions of `when` rules are typed by it.
    pub declared_types: Vec<Option<String>>,
}

/// What the catalog says about a column, as far as rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMeta {
    pub not_null: bool,
    /// A single-column UNIQUE constraint or primary key.
    pub unique: bool,
    pub kind: TypeKind,
    /// The n of varchar(n) / char(n).
    pub max_len: Option<usize>,
    /// The type as PostgreSQL writes it, for messages.
    pub type_name: String,
    /// The columns of each other unique index this column is in: a composite one (`UNIQUE (day,
    /// kind)`) or a partial one (`… WHERE NOT deleted`).
    pub unique_with: Vec<Vec<String>>,
}

/// Type families, with domains resolved to their base type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Text,
    Number,
    Date,
    Timestamp,
    Json,
    Other,
}

/// Where a sequence stands, as the sequence itself says: `nextval` gives `last_value + increment`
/// when it was called, `last_value` itself when not (a new sequence, or one set back with
/// `setval(…, false)` or `ALTER SEQUENCE … RESTART [WITH n]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceState {
    pub name: QualifiedName,
    pub last_value: i64,
    pub is_called: bool,
}

/// A materialized view: staging rebuilds it from the anonymized tables after the load.
#[derive(Debug, Clone, PartialEq)]
pub struct MatView {
    pub name: QualifiedName,
    /// `WITH DATA` in the source (an unpopulated one stays unpopulated).
    pub populated: bool,
}

/// An order of `names` in which every table comes after the tables it references (`edges` are
/// (referencing, referenced) indexes into `names`), so rows load with foreign keys in force. A
/// cycle is broken by taking the first remaining table by name.
pub fn load_order(names: &[&QualifiedName], edges: &[(usize, usize)]) -> Vec<usize> {
    let mut deps: BTreeMap<&QualifiedName, (usize, BTreeSet<&QualifiedName>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, (i, BTreeSet::new())))
        .collect();
    for &(from, to) in edges {
        if names[from] != names[to] {
            if let Some((_, d)) = deps.get_mut(names[from]) {
                d.insert(names[to]);
            }
        }
    }
    let mut order = Vec::with_capacity(deps.len());
    let mut done: BTreeSet<&QualifiedName> = BTreeSet::new();
    while order.len() < deps.len() {
        let ready = deps
            .iter()
            .find(|(n, (_, d))| !done.contains(*n) && d.iter().all(|x| done.contains(x)))
            .or_else(|| deps.iter().find(|(n, _)| !done.contains(*n)));
        let Some((name, (i, _))) = ready else { break };
        done.insert(name);
        order.push(*i);
    }
    order
}

/// Materialized views ordered so that each comes after every materialized view it reads through
/// any chain of views. `kinds`: name → (is materialized, is populated); `deps`: what each reads.
pub fn order_matviews(
    kinds: &BTreeMap<QualifiedName, (bool, bool)>,
    deps: &BTreeMap<QualifiedName, BTreeSet<QualifiedName>>,
) -> Vec<MatView> {
    fn visit(
        n: &QualifiedName,
        kinds: &BTreeMap<QualifiedName, (bool, bool)>,
        deps: &BTreeMap<QualifiedName, BTreeSet<QualifiedName>>,
        seen: &mut BTreeSet<QualifiedName>,
        out: &mut Vec<MatView>,
    ) {
        if !seen.insert(n.clone()) {
            return;
        }
        for d in deps.get(n).into_iter().flatten() {
            visit(d, kinds, deps, seen, out);
        }
        if let Some((true, populated)) = kinds.get(n) {
            out.push(MatView {
                name: n.clone(),
                populated: *populated,
            });
        }
    }
    let (mut seen, mut out) = (BTreeSet::new(), Vec::new());
    for n in kinds.keys() {
        visit(n, kinds, deps, &mut seen, &mut out);
    }
    out
}

/// A foreign key with its columns, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub from: QualifiedName,
    pub from_columns: Vec<String>,
    pub to: QualifiedName,
    pub to_columns: Vec<String>,
}
