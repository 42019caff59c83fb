//! Rendering of a dry-run preview: a table for people (80–120 columns) or JSON for scripts.

use crate::preview::Preview;

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

pub fn table(p: &Preview) -> String {
    let mut out = String::new();
    for t in &p.tables {
        out.push_str(&format!("{}  ({} rows)\n", t.name, t.rows));
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
            for (original, anonymized) in &c.samples {
                out.push_str(&format!(
                    "    {} → {}\n",
                    pad(&shorten(original.as_deref()), SHOWN),
                    shorten(anonymized.as_deref())
                ));
            }
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
            "  {}: {} rows, {} columns ({} transformed, {} kept){}\n",
            t.name,
            t.rows,
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
                        .map(|(o, a)| serde_json::json!({ "original": o, "anonymized": a }))
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
    let doc = serde_json::json!({ "tables": tables, "warnings": p.warnings() });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).expect("JSON values serialize")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
