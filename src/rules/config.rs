//! The serde mirror of the rules file. Every struct denies unknown keys: a misspelled option must be
//! an error, never silently ignored (for an anonymizer that would be a leak). Nothing here checks
//! meaning; `build` does that with the spans kept here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub source: Option<Endpoint>,
    pub target: Option<Endpoint>,
    pub secret: Option<Secret>,
    pub defaults: Option<Defaults>,
    pub policy: Option<PolicyRules>,
    #[serde(default)]
    pub tables: BTreeMap<Spanned<String>, TableRules>,
    /// Rules for the tables of one database of a pg_dumpall file.
    #[serde(default)]
    pub databases: BTreeMap<Spanned<String>, DatabaseRules>,
    /// References the schema does not declare (`[[references]]`).
    #[serde(default)]
    pub references: Vec<Spanned<ReferenceSpec>>,
    /// Test scenarios applied to staging after the data (`[[fixtures]]`).
    #[serde(default)]
    pub fixtures: Vec<Spanned<FixtureSpec>>,
}

/// `[[fixtures]] sql = "fixtures/qa.sql"`, or `csv = "fixtures/flags.csv"` with `table = "…"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureSpec {
    pub sql: Option<Spanned<String>>,
    pub csv: Option<Spanned<String>>,
    pub table: Option<Spanned<String>>,
}

/// `[[references]] from = "orders.customer_id"`, `to = "customers.id"` (lists for composite keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    pub from: Spanned<Names>,
    pub to: Spanned<Names>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

/// `subset = { percent = 10, always = "…", always_keys = [...], follow = false, only_referenced = true, key = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetSpec {
    pub percent: Option<Spanned<f64>>,
    pub always: Option<Spanned<String>>,
    pub always_keys: Option<Spanned<Vec<toml::Value>>>,
    pub follow: Option<Spanned<bool>>,
    pub only_referenced: Option<Spanned<bool>>,
    /// The columns that identify a row, for a table without a primary key.
    pub key: Option<Spanned<Vec<String>>>,
}

/// What happens to objects that are not table rows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRules {
    /// `"drop"` or `"keep"`.
    pub large_objects: Option<Spanned<String>>,
    /// `"keep"` or `"drop"`: COMMENT ON and SECURITY LABEL text.
    pub comments: Option<Spanned<String>>,
    /// `"drop"` (the default) or `"keep"`: foreign servers, user mappings and foreign tables in a
    /// dump or the schema `--create-schema` copies.
    pub foreign_servers: Option<Spanned<String>>,
    /// `"refresh"` (the default) or `"empty"`: materialized views rebuilt in staging from the
    /// anonymized rows, or left unpopulated (no function of theirs runs in staging).
    pub materialized_views: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRules {
    #[serde(default)]
    pub tables: BTreeMap<Spanned<String>, TableRules>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Optional: `--source`/`--target` or the default stand in.
    pub url: Option<Spanned<String>>,
    /// `[target]` only: the refresh strategy, `"swap"` or `"in-place"`.
    pub refresh: Option<Spanned<String>>,
    /// `[target]` only: staging-only tables a swap copies from the old staging unchanged.
    pub keep_tables: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub key_env: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub uncovered: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRules {
    #[serde(rename = "where")]
    pub filter: Option<Spanned<String>>,
    pub skip: Option<Spanned<bool>>,
    /// Names (with `*` wildcards) of this table's partitions, for sources that do not say which
    /// tables are partitions of which (a data-only dump).
    pub partitions: Option<Vec<Spanned<String>>>,
    pub subset: Option<Spanned<SubsetSpec>>,
    pub columns: Option<BTreeMap<Spanned<String>, Spanned<ColumnRule>>>,
}

/// `"keep"`, `"null"`, or a table with one transform key plus common options.
#[derive(Debug)]
pub enum ColumnRule {
    Keep,
    Null,
    Rule(Box<RuleTable>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTable {
    pub set: Option<Spanned<toml::Value>>,
    pub mask: Option<Spanned<MaskSpec>>,
    pub hash: Option<Spanned<HashSpec>>,
    pub fake: Option<Spanned<String>>,
    pub shift: Option<Spanned<ShiftSpec>>,
    pub truncate: Option<Spanned<String>>,
    pub noise: Option<Spanned<NoiseSpec>>,
    pub scrub: Option<Spanned<ScrubSpec>>,
    pub regex: Option<Spanned<RegexSpec>>,
    pub template: Option<Spanned<String>>,
    pub json: Option<Spanned<BTreeMap<String, Spanned<ColumnRule>>>>,
    /// An external command: `command = ["python3", "rules/tokenize.py"]`.
    pub command: Option<Spanned<Vec<String>>>,
    /// Seconds a command may take over one batch of values (command only).
    pub timeout: Option<Spanned<f64>>,
    /// Conditional alternatives, first match wins: `when = [{ if = "…", then = … }]`.
    pub when: Option<Spanned<Vec<Spanned<WhenSpec>>>>,
    /// The rule of rows no `when` condition selects, when it is `"keep"` or `"null"` (a transform
    /// is given as the rule's own key instead).
    #[serde(rename = "else")]
    pub otherwise: Option<Spanned<ColumnRule>>,
    // Common options.
    pub locale: Option<Spanned<String>>,
    pub unique: Option<Spanned<bool>>,
    pub domain: Option<Spanned<String>>,
    pub max_length: Option<Spanned<u32>>,
}

/// One alternative of a conditional rule: `{ if = "country = 'DE'", then = { fake = "email" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    #[serde(rename = "if")]
    pub condition: Spanned<String>,
    pub then: Spanned<ColumnRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    pub keep_first: Option<u32>,
    pub keep_last: Option<u32>,
    pub char: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashSpec {
    pub length: Option<Spanned<u32>>,
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftSpec {
    pub days: Spanned<u32>,
    pub by: Option<Spanned<String>>,
    pub keep: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSpec {
    pub percent: Option<Spanned<f64>>,
    pub absolute: Option<Spanned<f64>>,
    pub by: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexSpec {
    pub pattern: Spanned<String>,
    pub replace: String,
}

/// `scrub = ["email", …]`, or `scrub = { detectors = [...], names_from = ["first_name", …] }`.
#[derive(Debug)]
pub struct ScrubSpec {
    pub detectors: Vec<Spanned<String>>,
    /// Columns of the row whose values the `names` detector looks for.
    pub names_from: Option<Vec<Spanned<String>>>,
}

impl<'de> Deserialize<'de> for ScrubSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScrubVisitor;

        impl<'de> Visitor<'de> for ScrubVisitor {
            type Value = ScrubSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a list of detectors, or { detectors = [...], names_from = [...] }"#)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ScrubSpec, A::Error> {
                let mut detectors = Vec::new();
                while let Some(d) = seq.next_element::<Spanned<String>>()? {
                    detectors.push(d);
                }
                Ok(ScrubSpec {
                    detectors,
                    names_from: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ScrubSpec, A::Error> {
                let mut detectors = None;
                let mut names_from = None;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "detectors" => detectors = Some(map.next_value()?),
                        "names_from" => names_from = Some(map.next_value()?),
                        other => {
                            let hint = super::suggest(other, &["detectors", "names_from"])
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default();
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}`{hint}; expected one of `detectors`, `names_from`"
                            )));
                        }
                    }
                }
                Ok(ScrubSpec {
                    detectors: detectors.ok_or_else(|| de::Error::missing_field("detectors"))?,
                    names_from,
                })
            }
        }

        d.deserialize_any(ScrubVisitor)
    }
}

impl<'de> Deserialize<'de> for ColumnRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RuleVisitor;

        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = ColumnRule;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""keep", "null" or a table such as { fake = "email" }"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnRule, E> {
                match v {
                    "keep" => Ok(ColumnRule::Keep),
                    "null" => Ok(ColumnRule::Null),
                    other => {
                        let hint = super::suggest(other, &["keep", "null"])
                            .map(|s| format!(" (did you mean \"{s}\"?)"))
                            .unwrap_or_default();
                        Err(E::custom(format!(
                            "unknown rule \"{other}\"{hint}; a column takes \"keep\", \"null\" or a table such as {{ fake = \"email\" }}"
                        )))
                    }
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ColumnRule, A::Error> {
                RuleTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| ColumnRule::Rule(Box::new(t)))
            }
        }

        d.deserialize_any(RuleVisitor)
    }
}
