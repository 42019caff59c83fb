//! Rendering of a dry-run preview: a table for people (80–120 columns) or JSON for scripts.

use std::time::SystemTime;

use crate::command::preview::Preview;
use crate::db::redact;
use crate::error::Error;
use crate::pipeline::Report;
use crate::transform::dates::civil_from_days;

/// Longest value shown in the table format, in characters.
const SHOWN: usize = 40;

/// A value for one terminal cell: control characters made visible, long values cut with `…`.
fn shorten(v: Option<&str>) -> String {
    let Some(v) = v else {
        return "NULL".into();
    };
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if i == SHOWN - 1 {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push('·'),
            c => out.push(c),
        }
    }
    out
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// A table's row count as the dry run shows it.
fn rows_text(rows: Option<u64>) -> String {
    match rows {
        Some(n) => format!("{n} rows"),
        None => "rows unknown: no estimate, the table was never analyzed".to_string(),
    }
}

pub fn table(p: &Preview) -> String {
    let mut out = String::new();
    for t in &p.tables {
        out.push_str(&format!("{}  ({})\n", t.name, rows_text(t.rows)));
        if t.skipped {
            out.push_str("  skip = true: not copied\n\n");
            continue;
        }
        let transformed: Vec<_> = t.columns.iter().filter(|c| c.transformed).collect();
        if transformed.is_empty() {
            out.push_str("  every column kept\n");
        }
        for c in transformed {
            out.push_str(&format!("  {}  {}\n", c.name, c.rule));
            for (k, (original, anonymized)) in c.samples.iter().enumerate() {
                let branch = c
                    .branches
                    .get(k)
                    .map(|b| format!("  [{b}]"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "    {} → {}{branch}\n",
                    pad(&shorten(original.as_deref()), SHOWN),
                    pad(
                        &shorten(anonymized.as_deref()),
                        if branch.is_empty() { 0 } else { SHOWN }
                    ),
                ));
            }
            for w in &c.warnings {
                out.push_str(&format!("    ! {w}\n"));
            }
        }
        for c in t
            .columns
            .iter()
            .filter(|c| !c.transformed && !c.warnings.is_empty())
        {
            out.push_str(&format!("  {}  {}\n", c.name, c.rule));
            for w in &c.warnings {
                out.push_str(&format!("    ! {w}\n"));
            }
        }
        out.push('\n');
    }
    out.push_str("summary\n");
    for t in &p.tables {
        let transformed = t.columns.iter().filter(|c| c.transformed).count();
        let uncovered: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| c.rule.starts_with("uncovered"))
            .map(|c| c.name.as_str())
            .collect();
        out.push_str(&format!(
            "  {}: {}, {} columns ({} transformed, {} kept){}\n",
            t.name,
            rows_text(t.rows),
            t.columns.len(),
            transformed,
            t.columns.len() - transformed,
            if uncovered.is_empty() {
                String::new()
            } else {
                format!(", uncovered: {}", uncovered.join(", "))
            }
        ));
        for c in &t.columns {
            out.push_str(&format!("    {} = {}\n", c.name, c.rule));
        }
    }
    if !p.subset.is_empty() {
        out.push_str("subset\n");
        for t in &p.subset {
            let read = t.read.map(|r| format!(" of {r}")).unwrap_or_default();
            let kept = match (t.kept, t.exact) {
                (Some(k), true) => format!("{k}{read} rows kept"),
                (Some(k), false) => format!("about {k}{read} rows kept (catalog estimate)"),
                (None, _) => "rows kept unknown until the run (no catalog estimate)".to_string(),
            };
            out.push_str(&format!("  {}: {kept}: {}\n", t.name, t.why));
        }
    }
    out.push_str(&format!("{} warnings\n", p.warnings()));
    out
}

pub fn json(p: &Preview) -> String {
    let tables: Vec<serde_json::Value> = p
        .tables
        .iter()
        .map(|t| {
            let columns: Vec<serde_json::Value> = t
                .columns
                .iter()
                .map(|c| {
                    let samples: Vec<serde_json::Value> = c
                        .samples
                        .iter()
                        .enumerate()
                        .map(|(k, (o, a))| match c.branches.get(k) {
                            Some(b) => {
                                serde_json::json!({ "original": o, "anonymized": a, "branch": b })
                            }
                            None => serde_json::json!({ "original": o, "anonymized": a }),
                        })
                        .collect();
                    serde_json::json!({
                        "name": c.name,
                        "rule": c.rule,
                        "transformed": c.transformed,
                        "samples": if c.transformed { samples } else { Vec::new() },
                        "warnings": c.warnings,
                    })
                })
                .collect();
            serde_json::json!({
                "name": t.name.to_string(),
                "rows": t.rows,
                "skipped": t.skipped,
                "columns": columns,
            })
        })
        .collect();
    let subset: Vec<serde_json::Value> = p
        .subset
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name.to_string(),
                "kept": t.kept,
                "read": t.read,
                "exact": t.exact,
                "why": t.why,
            })
        })
        .collect();
    let doc = serde_json::json!({ "tables": tables, "subset": subset, "warnings": p.warnings() });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).expect("JSON values serialize")
    )
}

/// A moment as RFC 3339 in UTC, to the second.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The JSON report of a run (`--report FILE`): its schema is these two types. Passwords are
/// redacted; no cell value is ever in it.
#[derive(serde::Serialize)]
struct ReportDoc<'a> {
    /// `success` or `failed`.
    status: &'static str,
    error: Option<String>,
    exit_code: i32,
    started_at: String,
    finished_at: String,
    seconds: f64,
    source: Option<String>,
    target: Option<String>,
    rows_written: u64,
    tables: Vec<TableDoc<'a>>,
    /// `[[fixtures]]` applied after the data: staging's own rows, not anonymized.
    fixtures: &'a [crate::fixtures::Applied],
    /// `--audit`: the audit of the new staging (on a finding, the run failed with exit 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<&'a crate::audit::Outcome>,
    warnings: &'a [String],
}

/// One table of the report.
#[derive(serde::Serialize)]
struct TableDoc<'a> {
    name: String,
    rows_read: u64,
    rows_written: u64,
    bytes_read: u64,
    bytes_written: u64,
    seconds: f64,
    skipped: bool,
    /// Column → the rule applied to it.
    rules: std::collections::BTreeMap<&'a str, &'a str>,
    /// With a subset: why the rows written were kept (of the partitioned table, for a
    /// partition), e.g. "62 sample, 3 always, 40 referenced by kept rows".
    #[serde(skip_serializing_if = "Option::is_none")]
    subset: Option<&'a str>,
    /// Column → rows per alternative of its conditional rule, in the rule's order.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    branches: std::collections::BTreeMap<&'a str, Vec<BranchDoc<'a>>>,
}

/// The rows one alternative of a conditional rule took.
#[derive(serde::Serialize)]
struct BranchDoc<'a> {
    branch: &'a str,
    rows: u64,
}

/// The JSON report of a run, successful or not: what was done, with passwords redacted and no
/// cell value. `source` and `target` are None when the rules never loaded and no flag named them.
pub fn report(
    source: Option<&str>,
    target: Option<&str>,
    started: SystemTime,
    result: &Result<Report, Error>,
    warnings: &[String],
) -> String {
    let (status, error, exit_code, report) = match result {
        Ok(r) => ("success", None, 0, Some(r)),
        Err(e) => (
            "failed",
            Some(redact(&e.to_string())),
            e.exit_code(),
            match e {
                Error::Pipeline(f) => Some(&f.report),
                _ => None,
            },
        ),
    };
    let tables = report
        .map(|r| r.tables.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| TableDoc {
            name: t.name.to_string(),
            rows_read: t.rows_read,
            rows_written: t.rows_written,
            bytes_read: t.bytes_read,
            bytes_written: t.bytes_written,
            seconds: t.seconds,
            skipped: t.skipped,
            rules: t
                .rules
                .iter()
                .map(|(c, r)| (c.as_str(), r.as_str()))
                .collect(),
            subset: t.subset.as_deref(),
            branches: t
                .branches
                .iter()
                .map(|(c, counts)| {
                    (
                        c.as_str(),
                        counts
                            .iter()
                            .map(|(b, n)| BranchDoc {
                                branch: b.as_str(),
                                rows: *n,
                            })
                            .collect(),
                    )
                })
                .collect(),
        })
        .collect();
    let doc = ReportDoc {
        status,
        error,
        exit_code,
        started_at: rfc3339(started),
        finished_at: rfc3339(SystemTime::now()),
        seconds: report.map_or(0.0, |r| r.seconds),
        source: source.map(redact),
        target: target.map(redact),
        rows_written: report.map_or(0, |r| r.rows_written()),
        tables,
        fixtures: report.map(|r| r.fixtures.as_slice()).unwrap_or_default(),
        audit: match result {
            Err(Error::Pipeline(f)) => match &f.error {
                crate::pipeline::PipelineError::AuditFound(o) => Some(o),
                _ => None,
            },
            _ => report.and_then(|r| r.audit.as_ref()),
        },
        warnings,
    };
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).expect("the report's types serialize")
    )
}

/// Rows per second, 0 for no time at all.
pub fn rate(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

/// Below this many seconds a table's rate says more about the clock than about the table.
const MEASURABLE: f64 = 0.05;

/// A table's rate for display: `-` when it took too little time to measure.
pub fn shown_rate(rows: u64, seconds: f64) -> String {
    if seconds < MEASURABLE {
        "-".into()
    } else {
        format!("{:.0}", rate(rows, seconds))
    }
}

/// The end-of-run summary: one row per table (rows read and written, seconds, rows/s), the totals,
/// and the `done:` line.
pub fn summary(report: &Report, target: &str) -> String {
    let width = report
        .tables
        .iter()
        .map(|t| t.name.to_string().chars().count())
        .max()
        .unwrap_or(0)
        .max(18);
    let mut out = format!(
        "anonymize: summary\n  {}  {:>12}  {:>12}  {:>9}  {:>12}\n",
        pad("table", width),
        "rows read",
        "rows written",
        "seconds",
        "rows/s"
    );
    let row = |name: &str, read: u64, written: u64, seconds: f64| {
        format!(
            "  {}  {read:>12}  {written:>12}  {seconds:>9.2}  {:>12}\n",
            pad(name, width),
            shown_rate(written, seconds)
        )
    };
    for t in &report.tables {
        let name = t.name.to_string();
        if t.skipped {
            out.push_str(&format!("  {}  {:>12}\n", pad(&name, width), "skipped"));
        } else {
            out.push_str(&row(&name, t.rows_read, t.rows_written, t.seconds));
        }
    }
    let rows = report.rows_written();
    let read = report.tables.iter().map(|t| t.rows_read).sum();
    let total = format!("total ({} tables)", report.tables.len());
    out.push_str(&row(&total, read, rows, report.seconds));
    for t in &report.tables {
        for (column, counts) in &t.branches {
            let each: Vec<String> = counts.iter().map(|(b, n)| format!("{b}: {n}")).collect();
            out.push_str(&format!(
                "  {}.{column} rows by branch: {}\n",
                t.name,
                each.join(", ")
            ));
        }
    }
    for f in &report.fixtures {
        out.push_str(&format!(
            "  fixture {} ({}): {} statement(s), {} row(s), not anonymized\n",
            f.file, f.kind, f.statements, f.rows
        ));
    }
    out.push_str(&format!(
        "anonymize: done: {} tables, {rows} rows written to {target} in {:.2}s ({:.0} rows/s)\n",
        report.tables.len(),
        report.seconds,
        rate(rows, report.seconds)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(1_764_151_200 + 3 * 3600 + 4 * 60 + 5);
        assert_eq!(rfc3339(t), "2025-11-26T13:04:05Z");
    }

    #[test]
    fn a_rate_is_shown_only_for_a_measurable_time() {
        assert_eq!(shown_rate(1000, 0.0), "-");
        assert_eq!(shown_rate(1000, 0.001), "-");
        assert_eq!(shown_rate(1000, 0.5), "2000");
        let report = Report {
            tables: vec![crate::pipeline::TableStats {
                name: crate::rules::QualifiedName::new("public", "t"),
                rows_read: 1000,
                rows_written: 1000,
                bytes_read: 0,
                bytes_written: 0,
                seconds: 0.0001,
                skipped: false,
                rules: Vec::new(),
                subset: None,
                branches: Vec::new(),
            }],
            seconds: 2.0,
            ..Report::default()
        };
        let text = summary(&report, "x.sql");
        assert!(
            text.contains(
                "  public.t                    1000          1000       0.00             -\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "total (1 tables)            1000          1000       2.00           500\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn values_are_cut_and_made_visible() {
        assert_eq!(shorten(None), "NULL");
        assert_eq!(shorten(Some("a\tb\nc")), "a\\tb\\nc");
        let long = "x".repeat(100);
        let s = shorten(Some(&long));
        assert_eq!(s.chars().count(), SHOWN);
        assert!(s.ends_with('…'));
    }
}
