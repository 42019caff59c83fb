//! `json = { PATH = RULE, ... }`: apply rules inside json and jsonb values.
//!
//! ```toml
//! profile = { json = { "$.email" = { fake = "email" }, "$.address.phone" = { mask = { keep_last = 2 } }, "$.tags[*]" = { hash = { length = 8 } } } }
//! ```
//!
//! Paths: `$`, `.key`, `["key"]`, `[N]`, `[*]` and `.*`. Paths not named are kept. A rule applies to
//! the scalars a path reaches: strings as they are, numbers and booleans as their text (a result that
//! still parses as a number stays a number). JSON `null` stays null unless the rule is `"null"`.

use serde_json::Value;

use super::{Transform, ValueError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
    Any,
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path: {0}")]
pub struct PathError(pub &'static str);

pub fn parse_path(path: &str) -> Result<Vec<Step>, PathError> {
    let rest = path
        .strip_prefix('$')
        .ok_or(PathError("a path starts with `$`"))?;
    let mut steps = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end] != b'.' && b[end] != b'[' {
                    end += 1;
                }
                let key = &rest[start..end];
                if key.is_empty() {
                    return Err(PathError("empty key after `.`"));
                }
                steps.push(if key == "*" {
                    Step::Any
                } else {
                    Step::Key(key.to_string())
                });
                i = end;
            }
            b'[' => {
                let close = rest[i..]
                    .find(']')
                    .map(|c| i + c)
                    .ok_or(PathError("unclosed `[`"))?;
                let inner = rest[i + 1..close].trim();
                if inner == "*" {
                    steps.push(Step::Any);
                } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    steps.push(Step::Key(q.to_string()));
                } else {
                    let n = inner
                        .parse()
                        .map_err(|_| PathError("`[...]` holds a number, `*` or a quoted key"))?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
            }
            _ => return Err(PathError("expected `.` or `[` after `$` or a step")),
        }
    }
    Ok(steps)
}

#[derive(Debug, Clone)]
pub struct JsonRule {
    rules: Vec<(String, Vec<Step>, Transform)>,
}

impl JsonRule {
    pub fn new(rules: Vec<(String, Vec<Step>, Transform)>) -> Self {
        JsonRule { rules }
    }

    pub fn apply(&self, text: &str) -> Result<String, ValueError> {
        let mut doc: Value = serde_json::from_str(text).map_err(|e| {
            // serde_json's message names the position, never the content.
            ValueError::InvalidJson(format!("line {} column {}", e.line(), e.column()))
        })?;
        for (path, steps, t) in &self.rules {
            visit(&mut doc, steps, &mut |v| apply_scalar(v, t, path))?;
        }
        Ok(doc.to_string())
    }
}

fn visit(
    v: &mut Value,
    steps: &[Step],
    f: &mut dyn FnMut(&mut Value) -> Result<(), ValueError>,
) -> Result<(), ValueError> {
    let Some((step, rest)) = steps.split_first() else {
        return f(v);
    };
    match (step, v) {
        (Step::Key(k), Value::Object(map)) => {
            if let Some(child) = map.get_mut(k) {
                visit(child, rest, f)?;
            }
        }
        (Step::Index(n), Value::Array(items)) => {
            if let Some(child) = items.get_mut(*n) {
                visit(child, rest, f)?;
            }
        }
        (Step::Any, Value::Array(items)) => {
            for child in items {
                visit(child, rest, f)?;
            }
        }
        (Step::Any, Value::Object(map)) => {
            for child in map.values_mut() {
                visit(child, rest, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn apply_scalar(v: &mut Value, t: &Transform, path: &str) -> Result<(), ValueError> {
    let (text, was_number) = match v {
        Value::Null => {
            if matches!(t, Transform::Null) {
                *v = Value::Null;
            }
            return Ok(());
        }
        Value::String(s) => (std::mem::take(s), false),
        Value::Number(n) => (n.to_string(), true),
        Value::Bool(b) => (b.to_string(), false),
        Value::Array(_) | Value::Object(_) => {
            return Err(ValueError::JsonNotScalar(path.to_string()))
        }
    };
    *v = match t.apply(Some(&text))? {
        None => Value::Null,
        Some(out) => {
            let number = if was_number {
                out.parse::<serde_json::Number>().ok()
            } else {
                None
            };
            match number {
                Some(n) => Value::Number(n),
                None => Value::String(out),
            }
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::mask::Mask;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("$.a[0][*].b[\"c d\"].*").unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Index(0),
                Step::Any,
                Step::Key("b".into()),
                Step::Key("c d".into()),
                Step::Any
            ]
        );
        assert_eq!(parse_path("$").unwrap(), vec![]);
        assert!(parse_path("a.b").is_err());
        assert!(parse_path("$.a[").is_err());
        assert!(parse_path("$..a").is_err());
        assert!(parse_path("$[x]").is_err());
    }

    #[test]
    fn applies_to_named_paths_only() {
        let rule = JsonRule::new(vec![
            (
                "$.phone".into(),
                parse_path("$.phone").unwrap(),
                Transform::Mask(Mask::new(0, 2, '*')),
            ),
            (
                "$.tags[*]".into(),
                parse_path("$.tags[*]").unwrap(),
                Transform::Set("t".into()),
            ),
            (
                "$.age".into(),
                parse_path("$.age").unwrap(),
                Transform::Set("40".into()),
            ),
            (
                "$.gone".into(),
                parse_path("$.gone").unwrap(),
                Transform::Null,
            ),
        ]);
        let out = rule
            .apply(r#"{"phone":"555-0134","tags":["a","b"],"age":31,"keep":{"x":1},"gone":"y","missing":null}"#)
            .unwrap();
        assert_eq!(
            out,
            r#"{"phone":"***-**34","tags":["t","t"],"age":40,"keep":{"x":1},"gone":null,"missing":null}"#
        );
    }

    #[test]
    fn invalid_json_and_non_scalars_are_errors_without_content() {
        let rule = JsonRule::new(vec![(
            "$.a".into(),
            parse_path("$.a").unwrap(),
            Transform::Set("x".into()),
        )]);
        assert_eq!(
            rule.apply("{\"a\": secret"),
            Err(ValueError::InvalidJson("line 1 column 7".into()))
        );
        assert_eq!(
            rule.apply(r#"{"a": {"b": 1}}"#),
            Err(ValueError::JsonNotScalar("$.a".into()))
        );
    }
}
