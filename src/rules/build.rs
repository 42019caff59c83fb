//! Build phase: give every rule its meaning and turn it into a runtime transform, collecting every
//! problem with its location. No database and no data are touched here.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use regex::Regex;
use toml::Spanned;

use super::config::{self, ColumnRule, RuleTable};
use super::interp::interpolate;
use super::{suggest, Diagnostic, Location, Overrides, QualifiedName, SourceText};
use crate::endpoint::Endpoint;
use crate::transform::dates::{Shift, Truncate};
use crate::transform::fake::{FakeKind, Faker, Locale};
use crate::transform::hash::{Hash, HashFormat, MAX_LENGTH};
use crate::transform::json::{parse_path, JsonRule};
use crate::transform::mask::Mask;
use crate::transform::numbers::{Noise, NoiseAmount};
use crate::transform::scrub::{Detector, Scrub};
use crate::transform::seed::{SecretKey, MIN_KEY_LEN};
use crate::transform::text::{parse_template, Piece, RegexReplace};
use crate::transform::Transform;

/// What to do with tables and columns that no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncovered {
    Fail,
    Keep,
}

/// The validated, built rules: everything later stages need, nothing they must look up by string
/// from the user again.
#[derive(Debug)]
pub struct Plan {
    pub rules_file: String,
    pub source: Endpoint,
    pub target: Endpoint,
    /// `[target] refresh`, when the file says.
    pub refresh: Option<Strategy>,
    /// `[target] keep_tables`: staging-only tables a swap carries over unchanged.
    pub keep_tables: Vec<QualifiedName>,
    pub uncovered: Uncovered,
    pub tables: BTreeMap<QualifiedName, TablePlan>,
    /// Rules for the tables of named databases (the `\connect` sections of a pg_dumpall file);
    /// a database without its own section takes `tables`.
    pub databases: BTreeMap<String, BTreeMap<QualifiedName, TablePlan>>,
    pub policy: ObjectPolicy,
    /// `[[references]]`: references the schema does not declare.
    pub references: Vec<Reference>,
    /// The keyed hash subsets sample with (the secret key under the `subset` domains).
    pub subset_key: SubsetKey,
    /// `[[fixtures]]`, read and validated, in the order the file gives them.
    pub fixtures: Vec<crate::fixtures::Fixture>,
}

/// A reference from the rules file.
#[derive(Debug, Clone)]
pub struct Reference {
    pub key: crate::schema::ForeignKey,
    pub location: Location,
}

/// The secret key, for nothing but the per-table subset domains.
#[derive(Debug)]
pub struct SubsetKey(SecretKey);

impl SubsetKey {
    /// The keyed hash of one table's sample: its own domain, `subset:` and the table's name.
    pub fn table(&self, table: &QualifiedName) -> crate::transform::seed::Prf {
        self.0.domain(&format!("subset:{table}"))
    }

    /// The keyed hash the leak audit samples and compares with (its own domain).
    pub fn audit(&self) -> crate::transform::seed::SipKey {
        crate::transform::seed::SipKey::from_digest(&self.0.domain("audit").digest(b"sample"))
    }
}

/// `subset = { … }` of a table.
#[derive(Debug, Clone)]
pub struct SubsetPlan {
    /// `percent`: None for a table that only says `follow` or `only_referenced`.
    pub percent: Option<f64>,
    /// `always`: an SQL condition (database sources).
    pub always: Option<String>,
    /// `always_keys`: each key's values as text.
    pub always_keys: Vec<Vec<String>>,
    pub follow: bool,
    pub only_referenced: bool,
    pub key: Option<Vec<String>>,
    pub location: Location,
}

/// Keep or drop a kind of object that is not table rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Keep,
    Drop,
}

/// `[policy]`: what happens to large objects and comments; `None` when the file does not say, which
/// stops a run that meets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectPolicy {
    pub large_objects: Option<Choice>,
    pub comments: Option<Choice>,
    /// `None` is `Drop`: foreign data is left out unless asked for.
    pub foreign_servers: Option<Choice>,
    /// Materialized views left unpopulated in staging (`"empty"`) instead of refreshed there.
    pub empty_matviews: bool,
}

impl Plan {
    /// The rules of a table, in its database's section or the top-level one (a partition without
    /// rules of its own takes its parent's).
    pub fn table_rules(
        &self,
        database: Option<&str>,
        name: &QualifiedName,
        parent: Option<&QualifiedName>,
    ) -> Option<&TablePlan> {
        let map = self.tables_of(database);
        map.get(name)
            .or_else(|| parent.and_then(|p| map.get(p)))
            .or_else(|| {
                // A partition the source did not say is one, named by its parent's patterns.
                let mut matches = map.values().filter(|t| t.has_partition(name));
                match (matches.next(), matches.next()) {
                    (Some(t), None) => Some(t),
                    _ => None,
                }
            })
    }

    /// The section that holds the rules of a database's tables.
    pub fn tables_of(&self, database: Option<&str>) -> &BTreeMap<QualifiedName, TablePlan> {
        database
            .and_then(|d| self.databases.get(d))
            .unwrap_or(&self.tables)
    }
}

#[derive(Debug)]
pub struct TablePlan {
    pub name: QualifiedName,
    pub filter: Option<String>,
    pub skip: bool,
    pub columns: BTreeMap<String, ColumnPlan>,
    pub location: Location,
    /// Table names (in the same schema, `*` matching any run of characters) that are this table's
    /// partitions when the source does not say so.
    pub partitions: Vec<String>,
    pub subset: Option<SubsetPlan>,
}

impl TablePlan {
    /// Whether a table is one of this table's partitions by the `partitions` patterns.
    pub fn has_partition(&self, t: &QualifiedName) -> bool {
        t.schema == self.name.schema && self.partitions.iter().any(|p| glob(p, &t.name))
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[derive(Debug)]
pub struct ColumnPlan {
    /// The rule as a short text for reports and previews, e.g. `fake = "email", unique`.
    pub rule: String,
    pub op: ColumnOp,
    pub unique: bool,
    pub location: Location,
    /// `when` alternatives, tried in order before `op` (the default).
    pub when: Vec<BranchPlan>,
}

impl ColumnPlan {
    /// Every rule a row of this column can get: the branches', then the default.
    pub fn alternatives(&self) -> impl Iterator<Item = &ColumnOp> {
        self.when.iter().map(|b| &b.op).chain([&self.op])
    }
}

/// One `when` alternative: its condition (parsed, bound to columns later) and its rule.
#[derive(Debug, Clone)]
pub struct BranchPlan {
    pub condition: crate::transform::condition::Parsed,
    /// The condition as written, for reports and previews (rules-file text, never data).
    pub text: String,
    pub at: ConditionText,
    pub rule: String,
    pub op: ColumnOp,
    pub unique: bool,
    pub location: Location,
}

/// Where a condition's text is in the rules file, to point at a byte of it.
#[derive(Debug, Clone)]
pub struct ConditionText {
    /// The location of the condition's first character (of its string, when `exact` is false).
    start: Location,
    /// Whether the string is written without escapes, so offsets in it are offsets in the file.
    exact: bool,
    text: String,
}

impl ConditionText {
    /// The place in the rules file of byte `offset` of the condition.
    pub fn locate(&self, offset: usize) -> Location {
        let Location::Rules { file, line, col } = &self.start else {
            return self.start.clone();
        };
        if !self.exact {
            return self.start.clone();
        }
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &self.text[..end];
        match before.rfind('\n') {
            None => Location::Rules {
                file: file.clone(),
                line: *line,
                col: col + before.chars().count(),
            },
            Some(nl) => Location::Rules {
                file: file.clone(),
                line: line + before.matches('\n').count(),
                col: before[nl + 1..].chars().count() + 1,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub enum ColumnOp {
    Transform(Transform),
    /// Column names, resolved to positions when bound to a source table.
    Template(Vec<Piece<String>>),
}

/// Bits of keyed output below which a hash cannot promise `unique`.
const UNIQUE_MIN_BITS: f64 = 96.0;

/// The default name of the environment variable holding the key.
pub const DEFAULT_KEY_ENV: &str = "ANONYMIZE_KEY";

struct Builder<'a> {
    src: &'a SourceText,
    key: SecretKey,
    diags: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn at(&self, span: Range<usize>) -> Location {
        self.src.location(span.start)
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let location = Some(self.at(span));
        self.diags.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    fn prf(
        &self,
        default_domain: &str,
        domain: Option<&Spanned<String>>,
    ) -> crate::transform::seed::Prf {
        match domain {
            Some(d) => self.key.domain(&format!("domain:{}", d.get_ref())),
            None => self.key.domain(default_domain),
        }
    }
}

impl Builder<'_> {
    /// The key of a rule keyed `by` another column: its own family of domains, apart from every
    /// other rule's, so that an offset can never be computed from a hash printed in staging.
    fn by_prf(
        &self,
        default_domain: &str,
        domain: Option<&Spanned<String>>,
    ) -> crate::transform::seed::Prf {
        match domain {
            Some(d) => self
                .key
                .domain(&format!("by:{default_domain}:domain:{}", d.get_ref())),
            None => self.key.domain(&format!("by:{default_domain}")),
        }
    }
}

fn did_you_mean(wrong: &str, names: &[&str]) -> String {
    match suggest(wrong, names) {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => format!("; expected one of {}", names.join(", ")),
    }
}

/// The key from the environment or a key file (`None`: the variable is not set). Never part of any
/// message.
fn load_key(
    src: &SourceText,
    secret: Option<&config::Secret>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SecretKey>, Diagnostic> {
    if let Some(file) = secret.and_then(|s| s.key_file.as_ref()) {
        let loc = Some(src.location(file.span().start));
        let bytes = std::fs::read(file.get_ref()).map_err(|e| Diagnostic {
            location: loc.clone(),
            message: format!("cannot read the key file {}: {e}", file.get_ref()),
        })?;
        let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        return SecretKey::new(trimmed).map(Some).map_err(|e| Diagnostic {
            location: loc,
            message: format!("key file {}: {e}", file.get_ref()),
        });
    }
    let var = secret
        .and_then(|s| s.key_env.as_ref())
        .map(|v| v.get_ref().clone())
        .unwrap_or_else(|| DEFAULT_KEY_ENV.to_string());
    match env(&var).filter(|k| !k.is_empty()) {
        Some(k) => SecretKey::new(k.as_bytes())
            .map(Some)
            .map_err(|e| Diagnostic {
                location: None,
                message: format!("{var}: {e}"),
            }),
        None => Ok(None),
    }
}

fn key_not_set(secret: Option<&config::Secret>) -> Diagnostic {
    let var = secret
        .and_then(|s| s.key_env.as_ref())
        .map(|v| v.get_ref().clone())
        .unwrap_or_else(|| DEFAULT_KEY_ENV.to_string());
    Diagnostic {
        location: None,
        message: format!(
            "the secret key is not set: export {var}=<a random string of at least {MIN_KEY_LEN} bytes> \
             (for example from `openssl rand -hex 32`), or name a file with [secret] key_file"
        ),
    }
}

pub(super) fn build(
    src: &SourceText,
    file: config::RulesFile,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    if let Some(s) = &file.secret {
        if let (Some(_), Some(file)) = (&s.key_env, &s.key_file) {
            let span = file.span();
            diags.push(Diagnostic {
                location: Some(src.location(span.start)),
                message: "conflicting options: [secret] takes key_env or key_file, not both".into(),
            });
        }
    }
    // Without the key the rules are still checked, with a stand-in key, so every problem is reported
    // at once; the plan is not returned then.
    // `check` validates without the key (`key_optional`): the transforms are built with the stand-in
    // and never run.
    let stand_in = || SecretKey::new(b"stand-in key, never used to write").expect("a valid key");
    let key = match load_key(src, file.secret.as_ref(), env) {
        Ok(Some(k)) => k,
        Ok(None) if overrides.key_optional => stand_in(),
        Ok(None) => {
            diags.push(key_not_set(file.secret.as_ref()));
            stand_in()
        }
        Err(d) => {
            diags.push(d);
            stand_in()
        }
    };
    let mut b = Builder { src, key, diags };

    let mut endpoint =
        |name: &str, over: &Option<String>, e: &Option<config::Endpoint>, default: &str| {
            // The command line's value, or the file's (with its variables), parsed once.
            let (text, span) = match (over, e.as_ref().and_then(|e| e.url.as_ref())) {
                (Some(o), _) => (o.clone(), None),
                (None, Some(url)) => match interpolate(url.get_ref(), env) {
                    Ok(v) => (v, Some(url.span())),
                    Err(err) => {
                        b.error(url.span(), format!("[{name}] url: {err}"));
                        return Endpoint::Stdio;
                    }
                },
                (None, None) => (default.to_string(), None),
            };
            match Endpoint::parse(&text) {
                Ok(ep) => ep,
                Err(err) => {
                    match span {
                        Some(span) => b.error(span, format!("[{name}] url: {err}")),
                        None => b.diags.push(Diagnostic {
                            location: None,
                            message: format!("--{name}: {err}"),
                        }),
                    }
                    Endpoint::Stdio
                }
            }
        };
    let source = endpoint("source", &overrides.source, &file.source, "-");
    let target = endpoint("target", &overrides.target, &file.target, "-");
    let refresh = refresh_strategy(&mut b, file.source.as_ref(), file.target.as_ref());
    let keep_tables = keep_tables(&mut b, file.source.as_ref(), file.target.as_ref());

    let uncovered = match file.defaults.as_ref().and_then(|d| d.uncovered.as_ref()) {
        None => Uncovered::Fail,
        Some(u) => match u.get_ref().as_str() {
            "fail" => Uncovered::Fail,
            "keep" => Uncovered::Keep,
            other => {
                let msg = format!(
                    "unknown value \"{other}\" for uncovered{}",
                    did_you_mean(other, &["fail", "keep"])
                );
                b.error(u.span(), msg);
                Uncovered::Fail
            }
        },
    };

    let policy = ObjectPolicy {
        large_objects: file
            .policy
            .as_ref()
            .and_then(|p| choice(&mut b, "large_objects", p.large_objects.as_ref())),
        comments: file
            .policy
            .as_ref()
            .and_then(|p| choice(&mut b, "comments", p.comments.as_ref())),
        foreign_servers: file
            .policy
            .as_ref()
            .and_then(|p| choice(&mut b, "foreign_servers", p.foreign_servers.as_ref())),
        empty_matviews: match file
            .policy
            .as_ref()
            .and_then(|p| p.materialized_views.as_ref())
        {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "refresh" => false,
                "empty" => true,
                other => {
                    let msg = format!(
                        "unknown value \"{other}\" for materialized_views{}",
                        did_you_mean(other, &["refresh", "empty"])
                    );
                    b.error(v.span(), msg);
                    false
                }
            },
        },
    };
    let tables = build_tables(&mut b, &file.tables, env);
    let mut databases = BTreeMap::new();
    for (name, db) in &file.databases {
        let tables = build_tables(&mut b, &db.tables, env);
        if let Some((_, t)) = tables.iter().find(|(_, t)| t.subset.is_some()) {
            let span = name.span();
            b.error(
                span,
                format!("{}: subsets apply to the tables of one database, not to the databases of a pg_dumpall file", t.name),
            );
        }
        databases.insert(name.get_ref().clone(), tables);
    }
    let references = file
        .references
        .iter()
        .filter_map(|r| reference(&mut b, r))
        .collect();
    let fixtures = file
        .fixtures
        .iter()
        .filter_map(|f| fixture(&mut b, f))
        .collect();
    if !b.diags.is_empty() {
        return Err(b.diags);
    }
    let subset_key = SubsetKey(b.key.clone());
    Ok(Plan {
        rules_file: src.file.clone(),
        source,
        target,
        refresh,
        keep_tables,
        uncovered,
        tables,
        databases,
        policy,
        references,
        subset_key,
        fixtures,
    })
}

/// One `[[fixtures]]` entry, its file read and validated now so that a broken fixture stops the
/// run before anything is written.
fn fixture(
    b: &mut Builder,
    spec: &Spanned<config::FixtureSpec>,
) -> Option<crate::fixtures::Fixture> {
    use crate::fixtures::{Body, Fixture};
    let f = spec.get_ref();
    let (path, csv) = match (&f.sql, &f.csv) {
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        _ => {
            b.error(
                spec.span(),
                "[[fixtures]]: give one of sql = \"FILE\" or csv = \"FILE\" (with table = \"…\")",
            );
            return None;
        }
    };
    let file = path.get_ref().clone();
    let text = match std::fs::read(&file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                b.error(path.span(), format!("[[fixtures]] {file}: not UTF-8 text"));
                return None;
            }
        },
        Err(e) => {
            b.error(
                path.span(),
                format!("[[fixtures]]: cannot read {file}: {e}"),
            );
            return None;
        }
    };
    let body = match (csv, &f.table) {
        (false, Some(t)) => {
            b.error(
                t.span(),
                "[[fixtures]]: table = goes with a csv fixture (an SQL fixture names its tables)",
            );
            return None;
        }
        (false, None) => crate::fixtures::parse_sql(&file, &text).map(Body::Sql),
        (true, None) => {
            b.error(
                spec.span(),
                format!("[[fixtures]] {file}: a csv fixture needs table = \"schema.table\""),
            );
            return None;
        }
        (true, Some(t)) => {
            let Some(table) = QualifiedName::parse(t.get_ref()) else {
                b.error(
                    t.span(),
                    format!("[[fixtures]]: invalid table name {:?}", t.get_ref()),
                );
                return None;
            };
            crate::fixtures::parse_csv(&file, &text, table.clone()).map(|(columns, data, rows)| {
                Body::Csv {
                    table,
                    columns,
                    data,
                    rows,
                }
            })
        }
    };
    match body {
        Ok(body) => Some(Fixture { file, body }),
        Err(message) => {
            b.error(path.span(), message);
            None
        }
    }
}

/// `table.column` (the table as in `[tables."…"]`) split at its last dot outside quotes.
fn column_path(text: &str) -> Option<(QualifiedName, String)> {
    let mut quoted = false;
    let mut last = None;
    for (i, ch) in text.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '.' if !quoted => last = Some(i),
            _ => {}
        }
    }
    let at = last?;
    let (table, column) = (&text[..at], &text[at + 1..]);
    let column = match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(c) => c.replace("\"\"", "\""),
        None => column.to_string(),
    };
    if column.is_empty() {
        return None;
    }
    Some((QualifiedName::parse(table)?, column))
}

/// One `[[references]]` entry.
fn reference(b: &mut Builder, r: &Spanned<config::ReferenceSpec>) -> Option<Reference> {
    let side = |b: &mut Builder, names: &Spanned<config::Names>, what: &str| {
        let list: Vec<&String> = match names.get_ref() {
            config::Names::One(n) => vec![n],
            config::Names::Many(v) => v.iter().collect(),
        };
        if list.is_empty() {
            b.error(
                names.span(),
                format!("[[references]] {what}: name at least one column"),
            );
            return None;
        }
        let mut table: Option<QualifiedName> = None;
        let mut columns = Vec::new();
        for n in list {
            let Some((t, c)) = column_path(n) else {
                b.error(
                    names.span(),
                    format!("[[references]] {what}: \"{n}\" is not table.column (or schema.table.column)"),
                );
                return None;
            };
            if table.as_ref().is_some_and(|x| *x != t) {
                b.error(
                    names.span(),
                    format!("[[references]] {what}: every column must be of the same table"),
                );
                return None;
            }
            table = Some(t);
            columns.push(c);
        }
        Some((table?, columns))
    };
    let from = side(b, &r.get_ref().from, "from");
    let to = side(b, &r.get_ref().to, "to");
    let ((from, from_columns), (to, to_columns)) = (from?, to?);
    if from_columns.len() != to_columns.len() {
        b.error(
            r.span(),
            format!(
                "[[references]]: from has {} column(s) and to has {}",
                from_columns.len(),
                to_columns.len()
            ),
        );
        return None;
    }
    let location = b.at(r.span());
    Some(Reference {
        key: crate::schema::ForeignKey {
            name: format!("[[references]] at {location}"),
            from,
            from_columns,
            to,
            to_columns,
        },
        location,
    })
}

/// A table's `subset = { … }`.
fn subset(
    b: &mut Builder,
    name: &QualifiedName,
    spec: &Spanned<config::SubsetSpec>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<SubsetPlan> {
    let s = spec.get_ref();
    let mut ok = true;
    let percent = match &s.percent {
        Some(p) if !(*p.get_ref() > 0.0 && *p.get_ref() <= 100.0) => {
            b.error(
                p.span(),
                format!("{name}: subset percent must be above 0 and at most 100"),
            );
            ok = false;
            None
        }
        Some(p) => Some(*p.get_ref()),
        None => None,
    };
    let follow = s.follow.as_ref().is_none_or(|f| *f.get_ref());
    let only_referenced = s.only_referenced.as_ref().is_some_and(|f| *f.get_ref());
    let always = match &s.always {
        Some(a) => match interpolate(a.get_ref(), env) {
            Ok(v) => Some(v),
            Err(e) => {
                b.error(a.span(), format!("subset always: {e}"));
                ok = false;
                None
            }
        },
        None => None,
    };
    let mut always_keys = Vec::new();
    if let Some(keys) = &s.always_keys {
        for k in keys.get_ref() {
            let text = |v: &toml::Value| match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Boolean(x) => Some(if *x { "t" } else { "f" }.to_string()),
                _ => None,
            };
            let values = match k {
                toml::Value::Array(parts) => parts.iter().map(text).collect::<Option<Vec<_>>>(),
                v => text(v).map(|t| vec![t]),
            };
            match values {
                Some(v) if !v.is_empty() => always_keys.push(v),
                _ => {
                    b.error(
                        keys.span(),
                        format!("{name}: always_keys takes strings, integers or booleans (a list of them for a key of several columns)"),
                    );
                    ok = false;
                }
            }
        }
    }
    let conflict = |b: &mut Builder, why: &str| {
        b.error(
            spec.span(),
            format!("conflicting subset options for {name}: {why}"),
        );
    };
    if only_referenced && (percent.is_some() || always.is_some() || !always_keys.is_empty()) {
        conflict(b, "only_referenced keeps only the rows other rows reference, so it takes no percent, always or always_keys");
        ok = false;
    }
    if only_referenced && s.follow.is_some() {
        conflict(b, "only_referenced tables follow nothing; drop follow");
        ok = false;
    }
    if percent.is_none() && !only_referenced && (always.is_some() || !always_keys.is_empty()) {
        conflict(
            b,
            "always and always_keys add rows to a sample: give percent too",
        );
        ok = false;
    }
    if percent.is_some() && !follow {
        conflict(
            b,
            "follow = false copies the table whole, which a percent contradicts",
        );
        ok = false;
    }
    if percent.is_none() && !only_referenced && follow && s.key.is_none() {
        b.error(
            spec.span(),
            format!("{name}: subset needs percent, follow = false or only_referenced = true"),
        );
        ok = false;
    }
    let key = s.key.as_ref().map(|k| k.get_ref().clone());
    if key.as_ref().is_some_and(|k| k.is_empty()) {
        b.error(spec.span(), format!("{name}: subset key names no column"));
        ok = false;
    }
    let location = b.at(spec.span());
    ok.then_some(SubsetPlan {
        percent,
        always,
        always_keys,
        follow,
        only_referenced,
        key,
        location,
    })
}

/// How a staging database is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Load into staging in one transaction (tables locked meanwhile).
    #[value(name = "in-place")]
    InPlace,
    /// Build the new staging beside the old one and rename it into place.
    Swap,
}

/// `[target] keep_tables`: names of staging tables (`[source]` takes no such key).
fn keep_tables(
    b: &mut Builder,
    source: Option<&config::Endpoint>,
    target: Option<&config::Endpoint>,
) -> Vec<QualifiedName> {
    if let Some(k) = source.and_then(|s| s.keep_tables.as_ref()) {
        if let Some(first) = k.first() {
            b.error(
                first.span(),
                "[source] keep_tables: only [target] keeps tables",
            );
        }
    }
    let mut out = Vec::new();
    for t in target
        .and_then(|t| t.keep_tables.as_ref())
        .into_iter()
        .flatten()
    {
        match QualifiedName::parse(t.get_ref()) {
            Some(q) => out.push(q),
            None => b.error(
                t.span(),
                format!(
                    "[target] keep_tables: \"{}\" is not a table name",
                    t.get_ref()
                ),
            ),
        }
    }
    out
}

/// `[target] refresh`: how a database target is refreshed (`[source]` takes no such key).
fn refresh_strategy(
    b: &mut Builder,
    source: Option<&config::Endpoint>,
    target: Option<&config::Endpoint>,
) -> Option<Strategy> {
    if let Some(r) = source.and_then(|s| s.refresh.as_ref()) {
        b.error(
            r.span(),
            "[source] refresh: only [target] has a refresh strategy",
        );
    }
    let r = target.and_then(|t| t.refresh.as_ref())?;
    match r.get_ref().as_str() {
        "swap" => Some(Strategy::Swap),
        "in-place" => Some(Strategy::InPlace),
        other => {
            b.error(
                r.span(),
                format!("[target] refresh: \"{other}\" is not \"swap\" or \"in-place\""),
            );
            None
        }
    }
}

/// `keep` or `drop` for a policy key.
fn choice(b: &mut Builder, key: &str, v: Option<&Spanned<String>>) -> Option<Choice> {
    let v = v?;
    match v.get_ref().as_str() {
        "keep" => Some(Choice::Keep),
        "drop" => Some(Choice::Drop),
        other => {
            let msg = format!(
                "unknown value \"{other}\" for {key}{}",
                did_you_mean(other, &["keep", "drop"])
            );
            b.error(v.span(), msg);
            None
        }
    }
}

/// The `[tables.…]` sections of the file or of one database.
fn build_tables(
    b: &mut Builder,
    file_tables: &BTreeMap<Spanned<String>, config::TableRules>,
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<QualifiedName, TablePlan> {
    let mut tables = BTreeMap::new();
    for (key, t) in file_tables {
        let span = key.span();
        let key = key.get_ref();
        let Some(name) = QualifiedName::parse(key) else {
            b.error(span, format!("invalid table name \"{key}\": write table, schema.table, or quote parts as \"\\\"My Table\\\"\""));
            continue;
        };
        let skip_set = t.skip.as_ref().filter(|s| *s.get_ref());
        let skip = skip_set.is_some();
        if let Some(skip_set) = skip_set {
            if let Some(cols) = &t.columns {
                if !cols.is_empty() {
                    let span = skip_set.span();
                    b.error(span, format!("conflicting options for table {name}: skip = true copies no rows, so it takes no columns"));
                }
            }
        }
        let filter = t
            .filter
            .as_ref()
            .and_then(|f| match interpolate(f.get_ref(), env) {
                Ok(v) => Some(v),
                Err(e) => {
                    b.error(f.span(), format!("where: {e}"));
                    None
                }
            });
        let mut columns = BTreeMap::new();
        for (col, rule) in t.columns.iter().flatten() {
            let col = col.get_ref();
            if let Some(plan) = build_column(b, &name, col, rule) {
                columns.insert(col.clone(), plan);
            }
        }
        if tables.contains_key(&name) {
            b.error(
                span,
                format!("table {name} has rules twice (as \"{key}\" and another spelling)"),
            );
            continue;
        }
        let location = b.at(span);
        let subset = t.subset.as_ref().and_then(|s| subset(b, &name, s, env));
        if let (Some(s), true) = (&t.subset, skip) {
            b.error(s.span(), format!("conflicting options for table {name}: skip = true copies no rows, so it takes no subset"));
        }
        tables.insert(
            name.clone(),
            TablePlan {
                name,
                filter,
                skip,
                columns,
                location,
                subset,
                partitions: t
                    .partitions
                    .iter()
                    .flatten()
                    .map(|p| p.get_ref().clone())
                    .collect(),
            },
        );
    }
    tables
}

/// Build a column's rule, with its `when` alternatives.
fn build_column(
    b: &mut Builder,
    table: &QualifiedName,
    column: &str,
    rule: &Spanned<ColumnRule>,
) -> Option<ColumnPlan> {
    let location = b.at(rule.span());
    let t = match rule.get_ref() {
        ColumnRule::Rule(t) if t.when.is_some() || t.otherwise.is_some() => t,
        _ => {
            let (op, text, unique) = build_rule(b, table, column, rule, false)?;
            return Some(ColumnPlan {
                rule: text,
                op,
                unique,
                location,
                when: Vec::new(),
            });
        }
    };
    let Some(when) = &t.when else {
        let e = t.otherwise.as_ref()?;
        b.error(
            e.span(),
            "else gives the default of a rule with when = [...]; this rule has no when",
        );
        return None;
    };
    let default = match &t.otherwise {
        Some(e) => {
            let options = t.unique.is_some()
                || t.locale.is_some()
                || t.domain.is_some()
                || t.max_length.is_some()
                || t.timeout.is_some();
            if !present_kinds(t).is_empty() || options {
                b.error(e.span(), "else gives a \"keep\" or \"null\" default; a transform default is the rule's own key (fake = …) with its options, not both");
                return None;
            }
            if let ColumnRule::Rule(_) = e.get_ref() {
                b.error(e.span(), "else takes \"keep\" or \"null\"; give a transform default as the rule's own key, next to when");
                return None;
            }
            build_rule(b, table, column, e, false)
        }
        None if present_kinds(t).is_empty() => {
            b.error(rule.span(), format!("rule for {table}.{column} has when = [...] but no default: give the rule's own transform (e.g. fake = \"email\"), or else = \"keep\" or \"null\", so that no row escapes a rule"));
            return None;
        }
        None => build_rule(b, table, column, rule, false),
    };
    if when.get_ref().is_empty() {
        b.error(
            when.span(),
            "when needs at least one { if = \"…\", then = … }",
        );
        return None;
    }
    let mut branches = Vec::new();
    let mut ok = default.is_some();
    for w in when.get_ref() {
        let spec = w.get_ref();
        if let ColumnRule::Rule(inner) = spec.then.get_ref() {
            if inner.when.is_some() || inner.otherwise.is_some() {
                b.error(spec.then.span(), "a branch's rule cannot have its own when or else; list every condition in this when, first match wins");
                ok = false;
                continue;
            }
        }
        let text = spec.condition.get_ref();
        let at = condition_text(b, spec.condition.span(), text);
        let condition = match crate::transform::condition::parse(text) {
            Ok(p) => p,
            Err(e) => {
                b.diags.push(Diagnostic {
                    location: Some(at.locate(e.offset)),
                    message: format!("condition of {table}.{column}: {}", e.message),
                });
                ok = false;
                continue;
            }
        };
        let Some((op, rule, unique)) = build_rule(b, table, column, &spec.then, false) else {
            ok = false;
            continue;
        };
        branches.push(BranchPlan {
            condition,
            text: text.clone(),
            at,
            rule,
            op,
            unique,
            location: b.at(w.span()),
        });
    }
    let (op, default_text, default_unique) = default?;
    if !ok {
        return None;
    }
    let described: Vec<String> = branches
        .iter()
        .map(|br| format!("if {} then {}", br.text, br.rule))
        .collect();
    Some(ColumnPlan {
        rule: format!("when [{}] else {default_text}", described.join("; ")),
        // The default's own promise; each branch carries its own.
        unique: default_unique,
        op,
        location,
        when: branches,
    })
}

/// Where a condition string's text starts in the rules file, and whether its bytes are the
/// file's (no escapes), so that a problem can point at a byte of the condition.
fn condition_text(b: &Builder, span: Range<usize>, text: &str) -> ConditionText {
    let raw = b.src.text().get(span.clone()).unwrap_or("");
    let quote = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|q| raw.starts_with(q) && raw.len() >= 2 * q.len() && raw.ends_with(q));
    let exact = quote.filter(|q| raw.get(q.len()..raw.len() - q.len()) == Some(text));
    let start = exact.map_or(span.start, |q| span.start + q.len());
    ConditionText {
        start: b.src.location(start),
        exact: exact.is_some(),
        text: text.to_string(),
    }
}

/// Build one column rule. Returns the op, its description and whether it is unique.
fn build_rule(
    b: &mut Builder,
    table: &QualifiedName,
    column: &str,
    rule: &Spanned<ColumnRule>,
    nested: bool,
) -> Option<(ColumnOp, String, bool)> {
    let span = rule.span();
    let t = match rule.get_ref() {
        ColumnRule::Keep => {
            return Some((ColumnOp::Transform(Transform::Keep), "keep".into(), true))
        }
        ColumnRule::Null => {
            return Some((ColumnOp::Transform(Transform::Null), "null".into(), false))
        }
        ColumnRule::Rule(t) => t,
    };
    let present = present_kinds(t);
    let kind = match present.as_slice() {
        [one] => *one,
        [] => {
            b.error(
                span,
                format!(
                    "rule for {table}.{column} has no transform; give exactly one of {}",
                    RuleKind::ALL.map(RuleKind::key).join(", ")
                ),
            );
            return None;
        }
        many => {
            b.error(
                span,
                format!(
                    "rule for {table}.{column} has {} transforms ({}); give exactly one",
                    many.len(),
                    many.iter().map(|k| k.key()).collect::<Vec<_>>().join(", ")
                ),
            );
            return None;
        }
    };
    let unique = t.unique.as_ref().is_some_and(|u| *u.get_ref());
    if let Some(l) = &t.locale {
        if kind != RuleKind::Fake {
            b.error(
                l.span(),
                format!("locale applies to fake only, not to {}", kind.key()),
            );
        }
    }
    if nested && (t.when.is_some() || t.otherwise.is_some()) {
        b.error(
            span,
            "when and else apply to a column's rule, not inside a json rule",
        );
        return None;
    }
    if let Some(x) = t.timeout.as_ref().filter(|_| kind != RuleKind::Command) {
        b.error(
            x.span(),
            format!("timeout applies to command only, not to {}", kind.key()),
        );
    }
    if nested
        && matches!(
            kind,
            RuleKind::Json | RuleKind::Template | RuleKind::Command
        )
    {
        b.error(
            span,
            format!("{} cannot be used inside a json rule", kind.key()),
        );
        return None;
    }
    let domain = t.domain.as_ref();
    let cx = RuleContext {
        unique,
        nested,
        domain,
        table,
        column,
    };
    let (op, desc) = match kind {
        RuleKind::Set => build_set(b, t, &cx)?,
        RuleKind::Mask => build_mask(b, t, &cx)?,
        RuleKind::Hash => build_hash(b, t, &cx)?,
        RuleKind::Fake => build_fake(b, t, &cx)?,
        RuleKind::Shift => build_shift(b, t, &cx)?,
        RuleKind::Truncate => build_truncate(b, t, &cx)?,
        RuleKind::Noise => build_noise(b, t, &cx)?,
        RuleKind::Scrub => build_scrub(b, t, &cx)?,
        RuleKind::Regex => build_regex(b, t, &cx)?,
        RuleKind::Template => build_template(b, t, &cx)?,
        RuleKind::Json => build_json(b, t, &cx)?,
        RuleKind::Command => build_command(b, t, &cx)?,
    };
    if let Some(u) = t
        .unique
        .as_ref()
        .filter(|_| unique && !matches!(kind, RuleKind::Hash | RuleKind::Fake | RuleKind::Command))
    {
        b.error(u.span(), format!(
            "{} cannot promise unique values; use hash = {{ format = \"preserve\" }} or a unique fake kind (email, username, url, uuid, ipv6)",
            kind.key()
        ));
        return None;
    }
    let (op, desc) = match &t.max_length {
        None => (op, desc),
        Some(m) => {
            let max = *m.get_ref() as usize;
            let fits = matches!(kind, RuleKind::Fake | RuleKind::Scrub | RuleKind::Regex);
            match op {
                _ if max == 0 => {
                    b.error(m.span(), "max_length must be at least 1");
                    return None;
                }
                _ if unique => {
                    b.error(m.span(), "max_length cannot be combined with unique: cutting values could make two of them equal; use hash = { length = N } or widen the column");
                    return None;
                }
                ColumnOp::Transform(tr) if fits => (
                    ColumnOp::Transform(tr.fitted(max)),
                    format!("{desc}, max_length = {max}"),
                ),
                _ => {
                    b.error(
                        m.span(),
                        format!(
                            "max_length applies to fake, scrub and regex, not to {}",
                            kind.key()
                        ),
                    );
                    return None;
                }
            }
        }
    };
    Some((op, desc, unique))
}

/// `set = …`
fn build_set(b: &mut Builder, t: &RuleTable, _cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let v = t.set.as_ref()?;
    let text = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(x) => {
            if *x {
                "t".into()
            } else {
                "f".into()
            }
        }
        toml::Value::Datetime(d) => d.to_string(),
        _ => {
            b.error(
                v.span(),
                "set takes a string, number, boolean or date; use \"null\" for NULL",
            );
            return None;
        }
    };
    let desc = format!("set = {text:?}");
    Some((ColumnOp::Transform(Transform::Set(text)), desc))
}

/// `mask = …`
fn build_mask(b: &mut Builder, t: &RuleTable, _cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let m = t.mask.as_ref()?.get_ref();
    let ch = match &m.char {
        None => '*',
        Some(c) => {
            let mut it = c.get_ref().chars();
            match (it.next(), it.next()) {
                (Some(ch), None) => ch,
                _ => {
                    b.error(c.span(), "mask char must be exactly one character");
                    return None;
                }
            }
        }
    };
    let (first, last) = (m.keep_first.unwrap_or(0), m.keep_last.unwrap_or(0));
    let desc = format!("mask (keep_first {first}, keep_last {last})");
    Some((
        ColumnOp::Transform(Transform::Mask(Mask::new(
            first as usize,
            last as usize,
            ch,
        ))),
        desc,
    ))
}

/// `hash = …`
fn build_hash(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let RuleContext { unique, domain, .. } = *cx;
    let h = t.hash.as_ref()?.get_ref();
    let format = match &h.format {
        None => HashFormat::Hex,
        Some(f) => match HashFormat::parse(f.get_ref()) {
            Some(x) => x,
            None => {
                let msg = format!(
                    "unknown hash format \"{}\"{}",
                    f.get_ref(),
                    did_you_mean(f.get_ref(), HashFormat::NAMES)
                );
                b.error(f.span(), msg);
                return None;
            }
        },
    };
    let length = match (&h.length, format) {
        (Some(l), HashFormat::Preserve) => {
            b.error(l.span(), "conflicting options: format = \"preserve\" keeps the input's length; remove length");
            return None;
        }
        (Some(l), _) if *l.get_ref() == 0 || *l.get_ref() as usize > MAX_LENGTH => {
            b.error(
                l.span(),
                format!("hash length must be between 1 and {MAX_LENGTH}"),
            );
            return None;
        }
        (Some(l), _) => *l.get_ref() as usize,
        (None, f) => f.default_length(),
    };
    if unique && format != HashFormat::Preserve {
        let bits = format.bits_per_char() * length as f64;
        if bits < UNIQUE_MIN_BITS {
            let need = (UNIQUE_MIN_BITS / format.bits_per_char()).ceil();
            let u = t.unique.as_ref()?;
            b.error(u.span(), format!(
                "unique = true needs at least {UNIQUE_MIN_BITS} bits of hash: length = {need} or more for this format, or format = \"preserve\" (a keyed permutation, unique by construction)"
            ));
            return None;
        }
    }
    let fmt_name = HashFormat::NAMES[format as usize];
    let default_domain = if format == HashFormat::Preserve {
        "hash:preserve".to_string()
    } else {
        format!("hash:{fmt_name}:{length}")
    };
    let desc = if format == HashFormat::Preserve {
        "hash (preserve)".into()
    } else {
        format!("hash ({fmt_name}, {length})")
    };
    Some((
        ColumnOp::Transform(Transform::Hash(Hash::new(
            b.prf(&default_domain, domain),
            format,
            length,
        ))),
        desc,
    ))
}

/// `fake = …`
fn build_fake(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let RuleContext { unique, domain, .. } = *cx;
    let f = t.fake.as_ref()?;
    let Some(kind) = FakeKind::parse(f.get_ref()) else {
        let msg = format!(
            "unknown fake kind \"{}\"{}",
            f.get_ref(),
            did_you_mean(f.get_ref(), FakeKind::NAMES)
        );
        b.error(f.span(), msg);
        return None;
    };
    let locale = match &t.locale {
        None => Locale::En,
        Some(l) => match Locale::parse(l.get_ref()) {
            Some(x) => x,
            None => {
                let msg = format!(
                    "unknown locale \"{}\"{}",
                    l.get_ref(),
                    did_you_mean(l.get_ref(), Locale::NAMES)
                );
                b.error(l.span(), msg);
                return None;
            }
        },
    };
    if unique && !kind.supports_unique() {
        let u = t.unique.as_ref()?;
        b.error(u.span(), format!(
            "fake = \"{}\" cannot promise unique values; use hash = {{ format = \"preserve\" }}, or one of the fake kinds email, username, url, uuid, ipv6",
            kind.name()
        ));
        return None;
    }
    let desc = format!(
        "fake = \"{}\"{}{}",
        kind.name(),
        match locale {
            Locale::En => String::new(),
            other => format!(", locale = \"{}\"", other.name()),
        },
        if unique { ", unique" } else { "" }
    );
    Some((
        ColumnOp::Transform(Transform::Fake(fake_transform(
            b, kind, locale, unique, domain,
        ))),
        desc,
    ))
}

/// `shift = …`
fn build_shift(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let RuleContext { domain, .. } = *cx;
    let s = t.shift.as_ref()?.get_ref();
    let days = *s.days.get_ref();
    if days == 0 {
        b.error(s.days.span(), "shift days must be at least 1");
        return None;
    }
    let mut keep = Vec::new();
    for k in s.keep.iter().flatten() {
        match crate::transform::dates::date_days(k.get_ref()) {
            Some(d) => keep.push(d),
            None => b.error(
                k.span(),
                format!(
                    "shift keep takes dates written YYYY-MM-DD, not \"{}\"",
                    k.get_ref()
                ),
            ),
        }
    }
    let mut desc = format!("shift (±{days} days");
    let shift = match by_column(b, s.by.as_ref(), cx)? {
        Some(by) => {
            desc.push_str(&format!(" by {by}"));
            Shift::new(b.by_prf("shift", domain), days).by(by)
        }
        None => Shift::new(b.prf(&format!("shift:{days}"), domain), days),
    };
    if !keep.is_empty() {
        desc.push_str(&format!(", {} dates kept", keep.len()));
    }
    desc.push(')');
    Some((
        ColumnOp::Transform(Transform::Shift(shift.keeping(keep))),
        desc,
    ))
}

/// The column a `by` option names, checked where the rule is written (bind checks it exists).
fn by_column(
    b: &mut Builder,
    by: Option<&Spanned<String>>,
    cx: &RuleContext,
) -> Option<Option<String>> {
    let Some(by) = by else { return Some(None) };
    if cx.nested {
        b.error(
            by.span(),
            "by cannot be used inside a json rule (it reads another column of the row)",
        );
        return None;
    }
    if by.get_ref() == cx.column {
        b.error(
            by.span(),
            format!(
                "by names the column itself ({}); name another column of the row, such as its entity's id",
                cx.column
            ),
        );
        return None;
    }
    Some(Some(by.get_ref().clone()))
}

/// `truncate = …`
fn build_truncate(b: &mut Builder, t: &RuleTable, _cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let s = t.truncate.as_ref()?;
    let Some(tr) = Truncate::parse(s.get_ref()) else {
        let msg = format!(
            "unknown truncate unit \"{}\"{}",
            s.get_ref(),
            did_you_mean(s.get_ref(), Truncate::NAMES)
        );
        b.error(s.span(), msg);
        return None;
    };
    let desc = format!("truncate = \"{}\"", s.get_ref());
    Some((ColumnOp::Transform(Transform::Truncate(tr)), desc))
}

/// `noise = …`
fn build_noise(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let RuleContext { domain, .. } = *cx;
    let nspan = t.noise.as_ref()?.span();
    let n = t.noise.as_ref()?.get_ref();
    let amount = match (&n.percent, &n.absolute) {
        (Some(p), None) => {
            let v = *p.get_ref();
            if !(v > 0.0 && v <= 100.0) {
                b.error(p.span(), "noise percent must be above 0 and at most 100");
                return None;
            }
            NoiseAmount::Percent(v)
        }
        (None, Some(a)) => {
            let v = *a.get_ref();
            if !(v > 0.0 && v.is_finite()) {
                b.error(a.span(), "noise absolute must be above 0");
                return None;
            }
            NoiseAmount::Absolute(v)
        }
        (Some(_), Some(_)) => {
            b.error(
                nspan,
                "conflicting options: noise takes percent or absolute, not both",
            );
            return None;
        }
        (None, None) => {
            b.error(nspan, "noise needs percent = N or absolute = N");
            return None;
        }
    };
    let d = match amount {
        NoiseAmount::Percent(p) => format!("noise:percent={p}"),
        NoiseAmount::Absolute(a) => format!("noise:absolute={a}"),
    };
    let mut desc = match amount {
        NoiseAmount::Percent(p) => format!("noise (±{p}%)"),
        NoiseAmount::Absolute(a) => format!("noise (±{a})"),
    };
    let noise = match by_column(b, n.by.as_ref(), cx)? {
        Some(by) => {
            desc.insert_str(desc.len() - 1, &format!(" by {by}"));
            Noise::new(b.by_prf("noise", domain), amount).by(by)
        }
        None => Noise::new(b.prf(&d, domain), amount),
    };
    Some((ColumnOp::Transform(Transform::Noise(noise)), desc))
}

/// `scrub = …`
fn build_scrub(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let spec = t.scrub.as_ref()?;
    let list = &spec.get_ref().detectors;
    let all_names: Vec<&str> = Detector::NAMES.iter().copied().chain(["names"]).collect();
    if list.is_empty() {
        b.error(
            spec.span(),
            format!(
                "scrub needs at least one detector: {}",
                all_names.join(", ")
            ),
        );
        return None;
    }
    let mut detectors = BTreeSet::new();
    let mut names = false;
    for d in list {
        if d.get_ref() == "names" {
            if names {
                b.error(d.span(), "detector \"names\" is listed twice");
            }
            names = true;
            continue;
        }
        match Detector::parse(d.get_ref()) {
            Some(x) => {
                if !detectors.insert(x) {
                    b.error(
                        d.span(),
                        format!("detector \"{}\" is listed twice", d.get_ref()),
                    );
                }
            }
            None => {
                let msg = format!(
                    "unknown detector \"{}\"{}",
                    d.get_ref(),
                    did_you_mean(d.get_ref(), &all_names)
                );
                b.error(d.span(), msg);
            }
        }
    }
    let names_from: Vec<String> = match (&spec.get_ref().names_from, names) {
        (Some(cols), true) if !cols.is_empty() && !cx.nested => {
            cols.iter().map(|c| c.get_ref().clone()).collect()
        }
        (Some(_), true) if cx.nested => {
            b.error(spec.span(), "the names detector cannot be used inside a json rule (it reads other columns of the row)");
            return None;
        }
        (_, true) => {
            b.error(spec.span(), "the names detector needs names_from = [\"first_name\", …]: the columns whose values it looks for");
            return None;
        }
        (Some(cols), false) => {
            let at = cols.first().map_or(spec.span(), |c| c.span());
            b.error(
                at,
                "names_from is for the names detector: add \"names\" to detectors",
            );
            return None;
        }
        (None, false) => Vec::new(),
    };
    let listed: Vec<&str> = list.iter().map(|d| d.get_ref().as_str()).collect();
    let desc = if names_from.is_empty() {
        format!("scrub [{}]", listed.join(", "))
    } else {
        format!(
            "scrub [{}] names from {}",
            listed.join(", "),
            names_from.join(", ")
        )
    };
    Some((
        ColumnOp::Transform(Transform::Scrub(
            Scrub::new(
                detectors
                    .into_iter()
                    .map(|d| (d, scrub_replacement(b, d)))
                    .collect(),
            )
            .with_names_from(names_from),
        )),
        desc,
    ))
}

/// `regex = …`
fn build_regex(b: &mut Builder, t: &RuleTable, _cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let r = t.regex.as_ref()?.get_ref();
    let re = match Regex::new(r.pattern.get_ref()) {
        Ok(re) => re,
        Err(e) => {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            b.error(r.pattern.span(), format!("invalid regex pattern: {first}"));
            return None;
        }
    };
    let desc = "regex".into();
    Some((
        ColumnOp::Transform(Transform::Regex(RegexReplace::new(re, r.replace.clone()))),
        desc,
    ))
}

/// `template = …`
fn build_template(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let RuleContext { unique, .. } = *cx;
    let s = t.template.as_ref()?;
    if unique {
        b.error(s.span(), "a template cannot promise unique values");
        return None;
    }
    match parse_template(s.get_ref()) {
        Ok(pieces) => Some((
            ColumnOp::Template(pieces),
            format!("template = {:?}", s.get_ref()),
        )),
        Err(e) => {
            b.error(s.span(), e.to_string());
            None
        }
    }
}

/// `json = …`
fn build_json(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let RuleContext { table, column, .. } = *cx;
    let map = t.json.as_ref()?;
    let mut rules = Vec::new();
    for (path, sub) in map.get_ref() {
        let steps = match parse_path(path) {
            Ok(s) => s,
            Err(e) => {
                b.error(sub.span(), format!("{e} in \"{path}\""));
                continue;
            }
        };
        if let Some((ColumnOp::Transform(tr), _, _)) = build_rule(b, table, column, sub, true) {
            rules.push((path.clone(), steps, tr));
        }
    }
    let desc = format!("json ({} paths)", map.get_ref().len());
    Some((
        ColumnOp::Transform(Transform::Json(JsonRule::new(rules))),
        desc,
    ))
}

/// `command = ["program", "arg", …]`, with `timeout` (seconds per batch, 30 by default).
fn build_command(b: &mut Builder, t: &RuleTable, cx: &RuleContext) -> Option<(ColumnOp, String)> {
    let c = t.command.as_ref()?;
    let argv = c.get_ref();
    if argv.first().is_none_or(|p| p.is_empty()) {
        b.error(
            c.span(),
            "command needs a program: command = [\"python3\", \"rules/tokenize.py\"]",
        );
        return None;
    }
    let timeout = match &t.timeout {
        None => 30.0,
        Some(x) => {
            let v = *x.get_ref();
            if !(v > 0.0 && v <= 86400.0) {
                b.error(
                    x.span(),
                    "timeout is in seconds, more than 0 and at most 86400",
                );
                return None;
            }
            v
        }
    };
    let prf = b.prf("command", cx.domain);
    let seed: crate::external::SeedFn =
        std::sync::Arc::new(move |v: &str| prf.digest(v.as_bytes()));
    let command = crate::external::Command::new(
        argv.clone(),
        seed,
        std::time::Duration::from_secs_f64(timeout),
        None,
    );
    let desc = format!(
        "command = [{}]",
        argv.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Some((
        ColumnOp::Transform(Transform::External(std::sync::Arc::new(command))),
        desc,
    ))
}

fn fake_transform(
    b: &Builder,
    kind: FakeKind,
    locale: Locale,
    unique: bool,
    domain: Option<&Spanned<String>>,
) -> Faker {
    // Every part is an explicit string (never a `Debug` rendering): the domain seeds every
    // pseudonym, so it must not change with a rename.
    let default_domain = format!(
        "fake:{}:{}{}",
        kind.name(),
        locale.domain_name(),
        if unique { ":unique" } else { "" }
    );
    Faker::new(b.prf(&default_domain, domain), kind, locale, unique)
}

/// What a scrub detector replaces its findings with: the standalone rule, in its default domain, so
/// the same value gets the same pseudonym in a free-text column and in its own column.
fn scrub_replacement(b: &Builder, d: Detector) -> Transform {
    let fake = |kind, unique| Transform::Fake(fake_transform(b, kind, Locale::En, unique, None));
    match d {
        Detector::Email => fake(FakeKind::Email, true),
        Detector::Phone => fake(FakeKind::Phone, false),
        Detector::CreditCard => fake(FakeKind::CreditCard, false),
        Detector::Ssn => Transform::Hash(Hash::new(
            b.prf("hash:preserve", None),
            HashFormat::Preserve,
            0,
        )),
        Detector::Ipv4 => fake(FakeKind::Ipv4, false),
        Detector::Iban => fake(FakeKind::Iban, false),
        Detector::Url => fake(FakeKind::Url, false),
    }
}

/// The kinds of transform a column's rule table names (exactly one is valid).
fn present_kinds(t: &RuleTable) -> Vec<RuleKind> {
    RuleKind::ALL
        .iter()
        .copied()
        .filter(|k| k.present_in(t))
        .collect()
}

/// The transforms a column rule can name: one builder each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleKind {
    Set,
    Mask,
    Hash,
    Fake,
    Shift,
    Truncate,
    Noise,
    Scrub,
    Regex,
    Template,
    Json,
    Command,
}

impl RuleKind {
    const ALL: [RuleKind; 12] = [
        RuleKind::Set,
        RuleKind::Mask,
        RuleKind::Hash,
        RuleKind::Fake,
        RuleKind::Shift,
        RuleKind::Truncate,
        RuleKind::Noise,
        RuleKind::Scrub,
        RuleKind::Regex,
        RuleKind::Template,
        RuleKind::Json,
        RuleKind::Command,
    ];

    /// The key that names it in the rules file.
    fn key(self) -> &'static str {
        match self {
            RuleKind::Set => "set",
            RuleKind::Mask => "mask",
            RuleKind::Hash => "hash",
            RuleKind::Fake => "fake",
            RuleKind::Shift => "shift",
            RuleKind::Truncate => "truncate",
            RuleKind::Noise => "noise",
            RuleKind::Scrub => "scrub",
            RuleKind::Regex => "regex",
            RuleKind::Template => "template",
            RuleKind::Json => "json",
            RuleKind::Command => "command",
        }
    }

    /// Whether the rule table sets this kind's key.
    fn present_in(self, t: &RuleTable) -> bool {
        match self {
            RuleKind::Set => t.set.is_some(),
            RuleKind::Mask => t.mask.is_some(),
            RuleKind::Hash => t.hash.is_some(),
            RuleKind::Fake => t.fake.is_some(),
            RuleKind::Shift => t.shift.is_some(),
            RuleKind::Truncate => t.truncate.is_some(),
            RuleKind::Noise => t.noise.is_some(),
            RuleKind::Scrub => t.scrub.is_some(),
            RuleKind::Regex => t.regex.is_some(),
            RuleKind::Template => t.template.is_some(),
            RuleKind::Json => t.json.is_some(),
            RuleKind::Command => t.command.is_some(),
        }
    }
}

/// What every builder may need besides the rule's own table.
#[derive(Clone, Copy)]
struct RuleContext<'a> {
    unique: bool,
    /// Inside a `json` rule, where there is no row to read another column from.
    nested: bool,
    domain: Option<&'a Spanned<String>>,
    table: &'a QualifiedName,
    column: &'a str,
}
