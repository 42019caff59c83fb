//! `anonymize scan`: find likely personal data in a source and write a first, complete rules file.
//!
//! Every table and column of the source gets a line: a suggested rule where the column's name or its
//! sampled values look personal, `"keep"` elsewhere, and a comment with the reason and how confident
//! the guess is. Suggestions respect the schema (UNIQUE columns get rules that stay unique, fixed-size
//! outputs only where they fit, date rules only on dates), so the draft passes `anonymize check` as
//! written. It is a draft: a person reviews it before the first run.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use regex::Regex;

use super::sample::{decode_row, sample};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::rules::{ColumnMeta, QualifiedName, SourceTable, TypeKind};
use crate::transform::fake::iban_mod97;
use crate::transform::scrub::{classify_number, Detector};

/// Column-name words by the kind of personal data they suggest, in several languages.
const NAME_HINTS: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "email",
            "e_mail",
            "mail",
            "courriel",
            "correo",
            "emailaddress",
        ],
    ),
    (
        "phone",
        &[
            "phone",
            "telephone",
            "tel",
            "mobile",
            "cell",
            "fax",
            "telefono",
            "telefon",
            "handy",
            "portable",
            "msisdn",
        ],
    ),
    (
        "first_name",
        &[
            "first_name",
            "firstname",
            "given_name",
            "forename",
            "fname",
            "prenom",
            "vorname",
            "nombre",
        ],
    ),
    (
        "last_name",
        &[
            "last_name",
            "lastname",
            "surname",
            "family_name",
            "lname",
            "nom",
            "nachname",
            "apellido",
            "apellidos",
        ],
    ),
    (
        "full_name",
        &[
            "full_name",
            "fullname",
            "display_name",
            "contact_name",
            "customer_name",
            "person_name",
        ],
    ),
    (
        "username",
        &["username", "user_name", "login", "nickname", "handle"],
    ),
    (
        "street",
        &[
            "address",
            "address1",
            "address2",
            "address_line",
            "street",
            "street_address",
            "addr",
            "adresse",
            "direccion",
            "strasse",
        ],
    ),
    (
        "postal",
        &[
            "zip",
            "zipcode",
            "zip_code",
            "postal_code",
            "postcode",
            "plz",
            "cp",
            "codigo_postal",
        ],
    ),
    ("city", &["city", "town", "ville", "ciudad", "stadt"]),
    (
        "birth",
        &[
            "birth_date",
            "birthdate",
            "date_of_birth",
            "dob",
            "birthday",
            "born",
            "born_on",
            "geburtsdatum",
            "fecha_nacimiento",
            "date_naissance",
        ],
    ),
    (
        "national_id",
        &[
            "ssn",
            "social_security",
            "social_security_number",
            "national_id",
            "tax_id",
            "nin",
            "passport",
            "passport_number",
            "insee",
            "dni",
            "nif",
            "sin",
        ],
    ),
    (
        "ip",
        &[
            "ip",
            "ip_address",
            "ipaddress",
            "client_ip",
            "remote_addr",
            "remote_ip",
            "last_ip",
        ],
    ),
    (
        "secret",
        &[
            "password",
            "passwd",
            "password_hash",
            "secret",
            "token",
            "api_key",
        ],
    ),
    (
        "card",
        &["card_number", "credit_card", "cc_number", "pan", "card_no"],
    ),
    ("iban", &["iban", "bank_account", "account_number"]),
    (
        "money",
        &[
            "salary",
            "salaries",
            "wage",
            "wages",
            "income",
            "payroll",
            "bonus",
            "compensation",
            "gehalt",
            "salaire",
            "sueldo",
        ],
    ),
    (
        "event",
        &[
            "hire_date",
            "hired",
            "hired_at",
            "hiredate",
            "hired_on",
            "joined",
            "joined_at",
            "join_date",
            "signup_date",
            "signed_up_at",
            "registered_at",
            "registration_date",
            "last_login",
            "last_login_at",
            "last_seen",
            "last_seen_at",
            "termination_date",
            "terminated_at",
            "from_date",
            "to_date",
            "employment_start",
            "employment_end",
        ],
    ),
    (
        "photo",
        &["photo", "picture", "avatar", "image", "portrait"],
    ),
];

fn name_hint(column: &str) -> Option<&'static str> {
    let c = column.to_lowercase();
    NAME_HINTS
        .iter()
        .find(|(_, words)| {
            words.iter().any(|w| {
                c == *w || c.ends_with(&format!("_{w}")) || c.starts_with(&format!("{w}_"))
            })
        })
        .map(|(kind, _)| *kind)
}

/// What the sampled values of a column look like.
#[derive(Debug, Default)]
struct ValueKinds {
    non_null: usize,
    email: usize,
    phone: usize,
    card: usize,
    ssn: usize,
    iban: usize,
    ipv4: usize,
    ipv6: usize,
    /// Dates alone (no time of day) with a year a living adult could be born in.
    birth_like: usize,
    /// Free text that contains findings of these detectors.
    inside: BTreeSet<&'static str>,
    /// JSON documents: paths whose string values look personal, with the rule to use.
    json_paths: BTreeSet<(String, &'static str)>,
}

pub(crate) struct Detectors {
    email_full: Regex,
    email_any: Regex,
    number_any: Regex,
    ipv4_any: Regex,
}

impl Detectors {
    pub(crate) fn new() -> Self {
        let email = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";
        Detectors {
            email_full: Regex::new(&format!("^{email}$")).expect("valid"),
            email_any: Regex::new(email).expect("valid"),
            number_any: Regex::new(r"\+?\(?[0-9]+\)?(?:[ .-]\(?[0-9]+\)?)*").expect("valid"),
            ipv4_any: Regex::new(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b").expect("valid"),
        }
    }

    /// The pieces of personal data inside a text (emails, and numbers read as a phone, card or
    /// SSN; not IP addresses, whose digits turn up everywhere), with their kind.
    pub(crate) fn spans<'v>(&self, v: &'v str) -> Vec<(&'static str, &'v str)> {
        let mut out: Vec<(&'static str, &'v str)> = self
            .email_any
            .find_iter(v)
            .map(|m| ("email", m.as_str()))
            .collect();
        let all = [Detector::Ssn, Detector::CreditCard, Detector::Phone];
        for m in self.number_any.find_iter(v) {
            let kind = match classify_number(m.as_str(), &all) {
                Some(Detector::Ssn) => "ssn",
                Some(Detector::CreditCard) => "card",
                Some(Detector::Phone) => "phone",
                _ => continue,
            };
            out.push((kind, m.as_str().trim()));
        }
        out
    }

    /// The kind of a whole value, when it is one piece of personal data.
    pub(crate) fn whole(&self, v: &str) -> Option<&'static str> {
        let v = v.trim();
        if self.email_full.is_match(v) {
            return Some("email");
        }
        if v.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some("ipv6");
        }
        let compact: String = v.chars().filter(|c| *c != ' ').collect();
        if compact.len() >= 15
            && compact.len() <= 34
            && compact.chars().take(2).all(|c| c.is_ascii_uppercase())
            && compact.chars().skip(2).all(|c| c.is_ascii_alphanumeric())
            && iban_mod97(&format!("{}{}", &compact[4..], &compact[..4])) == 1
        {
            return Some("iban");
        }
        let all = [
            Detector::Ssn,
            Detector::Ipv4,
            Detector::CreditCard,
            Detector::Phone,
        ];
        if v.bytes()
            .all(|b| b.is_ascii_digit() || b" +-().".contains(&b))
        {
            return match classify_number(v, &all) {
                Some(Detector::Ssn) => Some("ssn"),
                Some(Detector::Ipv4) => Some("ipv4"),
                Some(Detector::CreditCard) => Some("card"),
                Some(Detector::Phone) => Some("phone"),
                _ => None,
            };
        }
        None
    }

    /// Detectors with findings inside free text.
    pub(crate) fn inside(&self, v: &str, found: &mut BTreeSet<&'static str>) {
        if self.email_any.is_match(v) {
            found.insert("email");
        }
        if self.ipv4_any.is_match(v) {
            found.insert("ipv4");
        }
        let all = [Detector::Ssn, Detector::CreditCard, Detector::Phone];
        for m in self.number_any.find_iter(v) {
            match classify_number(m.as_str(), &all) {
                Some(Detector::Ssn) => found.insert("ssn"),
                Some(Detector::CreditCard) => found.insert("credit_card"),
                Some(Detector::Phone) => found.insert("phone"),
                _ => false,
            };
        }
    }

    /// Paths to string values that look personal in one document: (path, the same path with
    /// every key as `.*`, rule kind).
    fn json(
        &self,
        v: &serde_json::Value,
        path: &str,
        general: &str,
        key: &str,
        out: &mut BTreeSet<(String, String, &'static str)>,
    ) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    // A key can be data too: only a name-like one (a letter first, nothing the
                    // detectors know) is written out; any other is matched by `.*`.
                    let name_like = k.len() <= 64
                        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && self.whole(k).is_none();
                    let p = if name_like {
                        format!("{path}.{k}")
                    } else {
                        format!("{path}.*")
                    };
                    self.json(child, &p, &format!("{general}.*"), k, out);
                }
            }
            serde_json::Value::Array(items) => {
                for child in items {
                    self.json(
                        child,
                        &format!("{path}[*]"),
                        &format!("{general}[*]"),
                        key,
                        out,
                    );
                }
            }
            serde_json::Value::String(s) => {
                if let Some(kind) = self.whole(s).or_else(|| {
                    name_hint(key).filter(|k| {
                        matches!(
                            *k,
                            "first_name" | "last_name" | "full_name" | "street" | "phone" | "email"
                        )
                    })
                }) {
                    out.insert((path.to_string(), general.to_string(), kind));
                }
            }
            _ => {}
        }
    }
}

fn kinds_of(d: &Detectors, values: &[String]) -> ValueKinds {
    let mut k = ValueKinds::default();
    let mut json_seen = std::collections::BTreeMap::new();
    for v in values {
        k.non_null += 1;
        match d.whole(v) {
            Some("email") => k.email += 1,
            Some("phone") => k.phone += 1,
            Some("card") => k.card += 1,
            Some("ssn") => k.ssn += 1,
            Some("iban") => k.iban += 1,
            Some("ipv4") => k.ipv4 += 1,
            Some("ipv6") => k.ipv6 += 1,
            _ if birth_like(v) => k.birth_like += 1,
            _ => {
                let t = v.trim_start();
                if t.starts_with('{') || t.starts_with('[') {
                    if let Ok(doc) = serde_json::from_str::<serde_json::Value>(v) {
                        let mut found = BTreeSet::new();
                        d.json(&doc, "$", "$", "", &mut found);
                        for f in found {
                            *json_seen.entry(f).or_insert(0usize) += 1;
                        }
                        continue;
                    }
                }
                d.inside(v, &mut k.inside);
            }
        }
    }
    // A key path seen in one document only may be a value used as a key (a map by user name):
    // it is drafted with every key as `.*`.
    for ((path, general, kind), n) in json_seen {
        k.json_paths
            .insert((if n >= 2 { path } else { general }, kind));
    }
    k
}

/// `YYYY-MM-DD` with a year from 1900 to 2012: the shape of a date of birth (a date of an event
/// comes with a time of day, or is recent).
fn birth_like(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && v[..4]
            .parse::<u16>()
            .is_ok_and(|y| (1900..=2012).contains(&y))
}

/// A suggestion: the rule's TOML, and the comment that explains it.
struct Suggestion {
    rule: String,
    reason: String,
}

fn fits(meta: Option<&ColumnMeta>, len: usize) -> bool {
    meta.and_then(|m| m.max_len).is_none_or(|max| len <= max)
}

fn is_text(meta: Option<&ColumnMeta>) -> bool {
    meta.is_none_or(|m| m.kind == TypeKind::Text)
}

/// The rule for a column, from its name, its values and its constraints.
fn suggest(column: &str, meta: Option<&ColumnMeta>, k: &ValueKinds) -> Option<Suggestion> {
    let unique = distinct_needed(meta);
    let by_values = |count: usize| k.non_null > 0 && count * 10 >= k.non_null * 8;
    let name = name_hint(column);
    let confidence = |by_name: bool, by_value: bool| match (by_name, by_value) {
        (true, true) => "high: name and values",
        (false, true) => "high: values",
        _ => "medium: name only",
    };
    // A keyed, length- and class-preserving pseudonym fits any text column and stays unique.
    let preserve = "{ hash = { format = \"preserve\" } }".to_string();
    let kind = if by_values(k.email) || (name == Some("email") && k.email > 0) {
        "email"
    } else if by_values(k.card) {
        "card"
    } else if by_values(k.iban) {
        "iban"
    } else if by_values(k.ssn) {
        "national_id"
    } else if by_values(k.ipv4) || by_values(k.ipv6) {
        "ip"
    } else if by_values(k.phone) && name != Some("postal") {
        "phone"
    } else if let Some(n) = name {
        n
    } else if !k.json_paths.is_empty() {
        "json"
    } else if !k.inside.is_empty() {
        "text"
    } else {
        return None;
    };
    let by_value = match kind {
        "json" | "text" => true,
        "email" => k.email > 0,
        "card" => k.card > 0,
        "iban" => k.iban > 0,
        "national_id" => k.ssn > 0,
        "ip" => k.ipv4 + k.ipv6 > 0,
        "phone" => k.phone > 0,
        "birth" => k.birth_like > 0,
        _ => false,
    };
    let conf = confidence(
        name == Some(kind) || (kind == "national_id" && name == Some("national_id")),
        by_value,
    );
    let text = is_text(meta);
    let (rule, what) = match kind {
        // Always the unique form: it is what scrub and other email columns use, so pseudonyms agree.
        "email" if text => (
            "{ fake = \"email\", unique = true }".into(),
            "email addresses",
        ),
        "card" if text && fits(meta, 16) && !unique => {
            ("{ fake = \"credit_card\" }".into(), "card numbers")
        }
        "iban" if text && fits(meta, 22) && !unique => ("{ fake = \"iban\" }".into(), "IBANs"),
        "ip" if k.ipv6 > k.ipv4 => ("{ fake = \"ipv6\", unique = true }".into(), "IP addresses"),
        "ip" if meta.is_none_or(|m| m.kind != TypeKind::Text || fits(Some(m), 15)) && !unique => {
            ("{ fake = \"ipv4\" }".into(), "IP addresses")
        }
        "first_name" if text && !unique => ("{ fake = \"first_name\" }".into(), "first names"),
        "last_name" if text && !unique => ("{ fake = \"last_name\" }".into(), "last names"),
        "full_name" if text && !unique => ("{ fake = \"name\" }".into(), "full names"),
        "username" if text => (
            "{ fake = \"username\", unique = true }".into(),
            "user names",
        ),
        "street" if text && !unique => ("{ fake = \"street_address\" }".into(), "street addresses"),
        "city" if text && !unique => ("{ fake = \"city\" }".into(), "cities"),
        "birth"
            if meta.is_none_or(|m| matches!(m.kind, TypeKind::Date | TypeKind::Timestamp))
                && !unique =>
        {
            ("{ shift = { days = 180 } }".into(), "dates of birth")
        }
        "secret" if text && fits(meta, 64) && !unique => (
            "{ hash = { length = 64 } }".into(),
            "secrets or password hashes",
        ),
        "photo" if meta.is_none_or(|m| !m.not_null) => ("\"null\"".into(), "pictures of people"),
        "json"
            if !unique
                && meta.is_none_or(|m| matches!(m.kind, TypeKind::Json | TypeKind::Text)) =>
        {
            let mut paths = Vec::new();
            for (path, kind) in &k.json_paths {
                let r = match *kind {
                    "email" => "{ fake = \"email\", unique = true }",
                    "phone" | "ssn" | "card" | "iban" | "ipv4" | "ipv6" => {
                        "{ hash = { format = \"preserve\" } }"
                    }
                    "first_name" => "{ fake = \"first_name\" }",
                    "last_name" => "{ fake = \"last_name\" }",
                    "full_name" => "{ fake = \"name\" }",
                    _ => "{ fake = \"street_address\" }",
                };
                paths.push(format!(
                    "{} = {r}",
                    serde_json::to_string(path).expect("strings serialize")
                ));
            }
            (
                format!("{{ json = {{ {} }} }}", paths.join(", ")),
                "personal data inside JSON documents",
            )
        }
        "text" if text && !unique => {
            let list: Vec<String> = k.inside.iter().map(|d| format!("\"{d}\"")).collect();
            (
                format!("{{ scrub = [{}] }}", list.join(", ")),
                "free text containing personal data",
            )
        }
        "phone" if text => (preserve, "phone numbers"),
        "national_id" if text => (preserve, "national identifiers"),
        "postal" if text => (preserve, "postal codes"),
        // Everything text-like that fits nothing else: a keyed pseudonym of the same shape.
        _ if text => (preserve, "personal data"),
        _ => return None,
    };
    Some(Suggestion {
        rule,
        reason: format!("{what} ({conf})"),
    })
}

/// Whether a column's values must stay distinct: a unique key, or a column of a composite or
/// partial unique index.
fn distinct_needed(meta: Option<&ColumnMeta>) -> bool {
    meta.is_some_and(|m| m.unique || !m.unique_with.is_empty())
}

/// Columns that name the person (or account) a row belongs to: a `by` for dates of their events.
const ENTITY_KEYS: &[&str] = &[
    "emp_no",
    "employee_id",
    "employee_no",
    "person_id",
    "user_id",
    "customer_id",
    "member_id",
    "patient_id",
    "client_id",
    "account_id",
    "contact_id",
    "student_id",
];

/// The rule for column `i` of a table, from what the rest of the table says too: a plain `name`
/// beside an email, phone or birth date is a person's; dates of a person's events move with one
/// offset per person (`by`), keeping sentinels; salaries get noise; a `tsvector` holds the words of
/// the columns it is built from; hstore, xml, arrays and composite values are scrubbed like text.
fn suggest_in(
    table: &SourceTable,
    i: usize,
    k: &ValueKinds,
    values: &[String],
) -> Option<Suggestion> {
    let column = &table.columns[i];
    let meta = table.meta.as_ref().and_then(|m| m.get(i));
    let hints: Vec<Option<&str>> = table.columns.iter().map(|c| name_hint(c)).collect();
    let lower = column.to_lowercase();
    if meta.is_some_and(|m| m.type_name == "tsvector") {
        let rule = if meta.is_some_and(|m| m.not_null) {
            "{ set = \"\" }"
        } else {
            "\"null\""
        };
        return Some(Suggestion {
            rule: rule.into(),
            reason: "a search vector holds every word of the columns it is built from (names, emails): rebuild it after the load with a fixture if the application searches (high: type)".into(),
        });
    }
    if lower == "name"
        && hints
            .iter()
            .any(|h| matches!(h, Some("email" | "phone" | "birth")))
        && is_text(meta)
        && !distinct_needed(meta)
    {
        return Some(Suggestion {
            rule: "{ fake = \"name\" }".into(),
            reason:
                "full names: a name beside an email, phone or birth date (medium: name and table)"
                    .into(),
        });
    }
    match name_hint(column) {
        Some("money")
            if meta.is_none_or(|m| m.kind == TypeKind::Number) && !distinct_needed(meta) =>
        {
            return Some(Suggestion {
                rule: "{ noise = { percent = 10 } }".into(),
                reason: "salaries or incomes (medium: name only)".into(),
            });
        }
        Some("event")
            if meta.is_none_or(|m| matches!(m.kind, TypeKind::Date | TypeKind::Timestamp)) =>
        {
            let by = table
                .columns
                .iter()
                .find(|c| ENTITY_KEYS.contains(&c.to_lowercase().as_str()))
                .or_else(|| {
                    table.columns.iter().enumerate().find_map(|(j, c)| {
                        table
                            .meta
                            .as_ref()
                            .and_then(|m| m.get(j))
                            .filter(|m| m.unique && m.kind == TypeKind::Number)
                            .map(|_| c)
                    })
                })
                .filter(|c| *c != column);
            // In a unique index, only an offset by another of its columns keeps rows apart.
            let apart = meta.is_none_or(|m| {
                !m.unique
                    && m.unique_with
                        .iter()
                        .all(|g| by.is_some_and(|b| g.iter().any(|c| c == b)))
            });
            if !apart {
                return suggest(column, meta, k);
            }
            let sentinels: BTreeSet<&str> = values
                .iter()
                .map(|v| v.get(..10).unwrap_or(v))
                .filter(|d| d.starts_with("9999-") || d.starts_with("2999-"))
                .collect();
            let mut opts = vec!["days = 30".to_string()];
            if let Some(b) = by {
                opts.push(format!(
                    "by = {}",
                    serde_json::to_string(b).expect("strings serialize")
                ));
            }
            if !sentinels.is_empty() {
                let list: Vec<String> = sentinels.iter().map(|d| format!("\"{d}\"")).collect();
                opts.push(format!("keep = [{}]", list.join(", ")));
            }
            return Some(Suggestion {
                rule: format!("{{ shift = {{ {} }} }}", opts.join(", ")),
                reason: format!(
                    "dates of a person's events{} (medium: name only)",
                    match by {
                        Some(b) => format!(", one offset per {b} so their order holds"),
                        None => String::new(),
                    }
                ),
            });
        }
        _ => {}
    }
    // hstore, xml, arrays, composite values: text with structure around it.
    if meta.is_some_and(|m| m.kind == TypeKind::Other) {
        let mut found = k.inside.clone();
        for (kind, detector) in [("email", "email"), ("phone", "phone")] {
            if name_hint(column) == Some(kind) && !values.is_empty() {
                found.insert(detector);
            }
        }
        if !found.is_empty() && !distinct_needed(meta) {
            let list: Vec<String> = found.iter().map(|d| format!("\"{d}\"")).collect();
            return Some(Suggestion {
                rule: format!("{{ scrub = [{}] }}", list.join(", ")),
                reason: format!(
                    "personal data inside {} values (high: values)",
                    meta.map_or("", |m| m.type_name.as_str())
                ),
            });
        }
    }
    suggest(column, meta, k)
}

/// A TOML key for a column name.
fn key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        serde_json::to_string(name).expect("strings serialize")
    }
}

/// Scan a source and return a draft rules file.
pub fn run(source: &Endpoint, sample_rows: usize) -> Result<String, Error> {
    // Everything is read and nothing written: large objects and comments are looked at, not judged.
    let look = crate::source::dump::DumpPolicy {
        large_objects: crate::source::dump::Policy::Keep,
        comments: crate::source::dump::Policy::Keep,
        foreign_servers: crate::source::dump::Policy::Keep,
        empty_matviews: false,
    };
    let sampled = sample(source, sample_rows, &|_| None, look)?;
    let d = Detectors::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Draft rules written by `anonymize scan` — review every line before the first run."
    );
    let _ = writeln!(
        out,
        "# Suggestions carry a comment: what the column seems to hold and how sure the scan is."
    );
    let _ = writeln!(out, "# \"keep\" means nothing personal was seen in {sample_rows} sampled rows: check those too.\n");
    let source_line = match source {
        Endpoint::Database(_) => "${PROD_DATABASE_URL}".to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(
        out,
        "[source]\nurl = {}\n",
        serde_json::to_string(&source_line).expect("strings serialize")
    );
    let _ = writeln!(
        out,
        "[target]\nurl = \"${{STAGING_DATABASE_URL:-staging.sql}}\"\n"
    );
    let _ = writeln!(
        out,
        "[secret]\nkey_env = \"ANONYMIZE_KEY\"\n\n[defaults]\nuncovered = \"fail\""
    );
    write_policy(&mut out, &sampled, &d);
    let mut done: BTreeSet<(Option<String>, QualifiedName)> = BTreeSet::new();
    let mut tally = Tally::default();
    for (table, rows) in sampled.tables.iter().zip(&sampled.samples) {
        let count = table.rows.unwrap_or(0);
        // Partitions share their partitioned table's rules: one section for all of them.
        let name = table
            .partition_of
            .clone()
            .unwrap_or_else(|| table.name.clone());
        if !done.insert((table.database.clone(), name.clone())) {
            continue;
        }
        let text = String::from_utf8_lossy(rows);
        let decoded: Vec<Vec<Option<String>>> =
            text.lines().filter_map(|l| decode_row(l).ok()).collect();
        // A database without statistics estimates 0 rows: say nothing rather than something wrong.
        let rows_note = if count > 0 {
            format!("  # {count} rows")
        } else {
            String::new()
        };
        // The tables of a pg_dumpall file's databases go under their database.
        let section = match &table.database {
            Some(db) => format!("databases.{}.", key(db)),
            None => String::new(),
        };
        if table.foreign {
            let _ = writeln!(
                out,
                "\n[{section}tables.{}]\nskip = true  # a foreign table: it reads another server, never copied",
                name.rules_key()
            );
            continue;
        }
        let _ = writeln!(
            out,
            "\n[{section}tables.{}.columns]{rows_note}",
            name.rules_key()
        );
        write_columns(&mut out, table, &decoded, &d, &mut tally);
    }
    if !sampled.matviews.is_empty() {
        let names: Vec<String> = sampled.matviews.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(
            out,
            "\n# Materialized views, rebuilt in staging from the anonymized tables (no rule needed): {}",
            names.join(", ")
        );
    }
    let t = &tally;
    let kept = t.kept_keys + t.kept_not_text + t.kept_nothing_seen + t.kept_empty;
    let _ = writeln!(
        out,
        "\n# Summary: {} tables, {} columns; {} suggestions ({} high confidence, {} medium: name only);\n\
         # {kept} columns kept: {} unique keys, {} numbers, dates and other non-text values with no personal name,\n\
         # {} texts with nothing personal in {sample_rows} sampled rows, {} never filled in the sample.",
        t.tables,
        t.columns,
        t.high + t.medium,
        t.high,
        t.medium,
        t.kept_keys,
        t.kept_not_text,
        t.kept_nothing_seen,
        t.kept_empty
    );
    Ok(out)
}

/// The `[policy]` section: large objects dropped (their content is not read by any rule), comments
/// kept or dropped by what the detectors find in them.
fn write_policy(out: &mut String, sampled: &crate::command::sample::Sampled, d: &Detectors) {
    let _ = writeln!(out, "\n[policy]");
    let lo_note = if sampled.large_objects {
        "the source has large objects; no rule reads their content"
    } else {
        "none seen in the source; \"drop\" keeps it so"
    };
    let _ = writeln!(out, "large_objects = \"drop\"  # {lo_note}");
    let mut found = BTreeSet::new();
    let mut with_pii = 0;
    for c in &sampled.comments {
        let mut here = BTreeSet::new();
        d.inside(c, &mut here);
        if !here.is_empty() {
            with_pii += 1;
            found.extend(here);
        }
    }
    let n = sampled.comments.len();
    let line = if with_pii > 0 {
        let kinds: Vec<&str> = found.iter().copied().collect();
        format!(
            "comments = \"drop\"  # {with_pii} of {n} comments hold what looks personal ({})",
            kinds.join(", ")
        )
    } else if n > 0 {
        format!("comments = \"keep\"  # nothing personal found in {n} comments: read them too")
    } else {
        "comments = \"keep\"  # no COMMENT ON or SECURITY LABEL in the source".to_string()
    };
    let _ = writeln!(out, "{line}");
}

/// What a scan suggested, for its closing summary.
#[derive(Default)]
struct Tally {
    tables: usize,
    columns: usize,
    high: usize,
    medium: usize,
    kept_keys: usize,
    kept_not_text: usize,
    kept_nothing_seen: usize,
    kept_empty: usize,
}

fn write_columns(
    out: &mut String,
    table: &SourceTable,
    rows: &[Vec<Option<String>>],
    d: &Detectors,
    tally: &mut Tally,
) {
    tally.tables += 1;
    let width = table
        .columns
        .iter()
        .map(|c| key(c).len())
        .max()
        .unwrap_or(0);
    for (i, column) in table.columns.iter().enumerate() {
        let values: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get(i).cloned().flatten())
            .collect();
        let meta = table.meta.as_ref().and_then(|m| m.get(i));
        let kinds = kinds_of(d, &values);
        let k = key(column);
        tally.columns += 1;
        match suggest_in(table, i, &kinds, &values) {
            Some(s) => {
                if s.reason.contains("(high") {
                    tally.high += 1;
                } else {
                    tally.medium += 1;
                }
                let _ = writeln!(out, "{k:width$} = {}  # {}", s.rule, s.reason);
            }
            None => {
                if meta.is_some_and(|m| m.unique) {
                    tally.kept_keys += 1;
                } else if values.is_empty() {
                    tally.kept_empty += 1;
                } else if !is_text(meta) {
                    tally.kept_not_text += 1;
                } else {
                    tally.kept_nothing_seen += 1;
                }
                let _ = writeln!(out, "{k:width$} = \"keep\"");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(values: &[&str]) -> ValueKinds {
        kinds_of(
            &Detectors::new(),
            &values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn names_in_several_languages() {
        for (column, kind) in [
            ("email", "email"),
            ("customer_email", "email"),
            ("Vorname", "first_name"),
            ("apellido", "last_name"),
            ("telefono", "phone"),
            ("date_of_birth", "birth"),
            ("plz", "postal"),
            ("ssn", "national_id"),
        ] {
            assert_eq!(name_hint(column), Some(kind), "{column}");
        }
        assert_eq!(name_hint("title"), None);
        assert_eq!(name_hint("amount"), None);
    }

    #[test]
    fn values_tell_what_names_do_not() {
        let k = kinds(&["a@b.io", "c.d@e.org", "f@g.net"]);
        assert_eq!(
            suggest("contact", None, &k).unwrap().rule,
            "{ fake = \"email\", unique = true }"
        );
        let k = kinds(&["4111 1111 1111 1111", "4000000000000002"]);
        assert_eq!(
            suggest("x", None, &k).unwrap().rule,
            "{ fake = \"credit_card\" }"
        );
        let k = kinds(&[
            "call me at +1 415-555-0134",
            "nothing here",
            "ssn 123-45-6789",
        ]);
        assert_eq!(
            suggest("notes", None, &k).unwrap().rule,
            "{ scrub = [\"phone\", \"ssn\"] }"
        );
        let k = kinds(&[
            r#"{"email": "a@b.io", "n": 1, "address": {"phone": "+1 415 555 0134"}}"#,
            r#"{"email": "c@d.io", "address": {"phone": "+1 415 555 0199"}}"#,
        ]);
        assert_eq!(
            suggest("profile", None, &k).unwrap().rule,
            "{ json = { \"$.address.phone\" = { hash = { format = \"preserve\" } }, \"$.email\" = { fake = \"email\", unique = true } } }"
        );
        // Keys are data too: one seen in a single document, or one that is not name-like, is not
        // written into the draft.
        let k = kinds(&[
            r#"{"jsmith42": {"mail": "a@b.io"}, "x@y.io": "c@d.io"}"#,
            r#"{"alee7": {"mail": "e@f.io"}}"#,
        ]);
        let rule = suggest("profile", None, &k).unwrap().rule;
        for key in ["jsmith42", "alee7", "x@y.io"] {
            assert!(!rule.contains(key), "{rule}");
        }
        assert!(
            rule.contains("\"$.*.*\"") && rule.contains("\"$.*\""),
            "{rule}"
        );
        assert!(suggest("title", None, &kinds(&["ACADEMY DINOSAUR"])).is_none());
        let born = suggest(
            "born_on",
            None,
            &kinds(&["1984-03-02", "1971-11-30", "2001-06-15"]),
        )
        .unwrap();
        assert_eq!(
            (born.rule.as_str(), born.reason.as_str()),
            (
                "{ shift = { days = 180 } }",
                "dates of birth (high: name and values)"
            )
        );
        // Dates of birth only from names: order dates of the same shape are not.
        assert!(suggest("ordered", None, &kinds(&["1984-03-02", "1971-11-30"])).is_none());
        assert!(suggest("shipped_on", None, &kinds(&["2024-03-02", "2023-11-30"])).is_none());
        assert!(suggest("created_at", None, &kinds(&["1999-03-02 10:00:00+00"])).is_none());
        assert!(suggest("amount", None, &kinds(&["12.50", "7.00"])).is_none());
    }

    #[test]
    fn constraints_shape_the_suggestion() {
        let m = |unique: bool, kind: TypeKind, max_len: Option<usize>| ColumnMeta {
            not_null: true,
            unique,
            kind,
            max_len,
            type_name: "t".into(),
            unique_with: Vec::new(),
        };
        // A unique name column cannot take a non-unique fake: the keyed pseudonym instead.
        let unique_text = m(true, TypeKind::Text, None);
        assert_eq!(
            suggest("first_name", Some(&unique_text), &kinds(&["Ann"]))
                .unwrap()
                .rule,
            "{ hash = { format = \"preserve\" } }"
        );
        // A birth date kept as text cannot be shifted.
        assert_eq!(
            suggest(
                "dob",
                Some(&m(false, TypeKind::Text, None)),
                &kinds(&["1990-01-01"])
            )
            .unwrap()
            .rule,
            "{ hash = { format = \"preserve\" } }"
        );
        // Rules that cannot stay unique give way to the keyed pseudonym on a UNIQUE column.
        for (column, values) in [
            ("password", vec!["5f4dcc3b5aa765d61d8327deb882cf99"]),
            ("notes", vec!["mail me: a@b.io"]),
        ] {
            let values: Vec<&str> = values;
            assert_eq!(
                suggest(column, Some(&unique_text), &kinds(&values))
                    .unwrap()
                    .rule,
                "{ hash = { format = \"preserve\" } }",
                "{column}"
            );
        }
        // A card number in a varchar(12) cannot take a 16-digit fake.
        let short = m(false, TypeKind::Text, Some(12));
        assert_eq!(
            suggest(
                "card_number",
                Some(&short),
                &kinds(&["4111 1111 1111 1111"])
            )
            .unwrap()
            .rule,
            "{ hash = { format = \"preserve\" } }"
        );
    }

    #[test]
    fn the_table_around_a_column_shapes_its_suggestion() {
        let m = |kind: TypeKind, ty: &str, unique: bool| ColumnMeta {
            not_null: unique,
            unique,
            kind,
            max_len: None,
            type_name: ty.into(),
            unique_with: Vec::new(),
        };
        let table = |cols: &[(&str, ColumnMeta)]| SourceTable {
            name: QualifiedName::new("public", "t"),
            columns: cols.iter().map(|c| c.0.to_string()).collect(),
            partition_of: None,
            meta: Some(cols.iter().map(|c| c.1.clone()).collect()),
            rows: None,
            database: None,
            foreign: false,
            declared_types: Vec::new(),
        };
        let at = |t: &SourceTable, i: usize, values: &[&str]| {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            suggest_in(t, i, &kinds_of(&Detectors::new(), &values), &values)
                .map(|s| (s.rule, s.reason))
        };
        let salaries = table(&[
            ("emp_no", m(TypeKind::Number, "integer", false)),
            ("salary", m(TypeKind::Number, "integer", false)),
            ("from_date", m(TypeKind::Date, "date", false)),
            ("to_date", m(TypeKind::Date, "date", false)),
        ]);
        assert_eq!(
            at(&salaries, 1, &["60117", "62102"]).unwrap().0,
            "{ noise = { percent = 10 } }"
        );
        assert_eq!(
            at(&salaries, 3, &["1987-06-26", "9999-01-01"]).unwrap(),
            (
                "{ shift = { days = 30, by = \"emp_no\", keep = [\"9999-01-01\"] } }".to_string(),
                "dates of a person's events, one offset per emp_no so their order holds (medium: name only)".to_string()
            )
        );
        // A hire date in a table keyed by its own id.
        let employees = table(&[
            ("id", m(TypeKind::Number, "bigint", true)),
            (
                "hire_date",
                m(TypeKind::Timestamp, "timestamp without time zone", false),
            ),
        ]);
        assert_eq!(
            at(&employees, 1, &["2001-02-03 00:00:00"]).unwrap().0,
            "{ shift = { days = 30, by = \"id\" } }"
        );
        let people = table(&[
            ("id", m(TypeKind::Number, "integer", true)),
            ("name", m(TypeKind::Text, "text", false)),
            ("email", m(TypeKind::Text, "text", false)),
            ("tags", m(TypeKind::Other, "text[]", false)),
            ("attrs", m(TypeKind::Other, "hstore", false)),
            ("search", m(TypeKind::Other, "tsvector", false)),
        ]);
        assert_eq!(
            at(&people, 1, &["Ann Lee"]).unwrap().0,
            "{ fake = \"name\" }"
        );
        assert_eq!(
            at(&people, 3, &["{ann@corp.example,vip}"]).unwrap().0,
            "{ scrub = [\"email\"] }"
        );
        assert_eq!(
            at(&people, 4, &["\"mobile\"=>\"+1 415-555-0134\""])
                .unwrap()
                .0,
            "{ scrub = [\"phone\"] }"
        );
        let (rule, reason) = at(&people, 5, &["'ann':1 'corp.example':2"]).unwrap();
        assert_eq!(rule, "\"null\"");
        assert!(reason.starts_with("a search vector"), "{reason}");
        // A name alone, with nothing personal beside it, is a product's or a place's.
        let products = table(&[
            ("id", m(TypeKind::Number, "integer", true)),
            ("name", m(TypeKind::Text, "text", false)),
        ]);
        assert!(at(&products, 1, &["ACADEMY DINOSAUR"]).is_none());
    }
}
