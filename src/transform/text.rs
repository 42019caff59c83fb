//! Free-text rules that need no key: `regex = { pattern, replace }` and `template = "..."`.
//!
//! ```toml
//! reference = { regex = { pattern = "[0-9]{4}$", replace = "0000" } }
//! login     = { template = "{first_name}.{last_name}@example.com" }
//! ```
//!
//! A template is built from the *anonymized* values of other columns of the same row, so it agrees
//! with them; `{{` and `}}` stand for literal braces, and a NULL column contributes nothing.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct RegexReplace {
    regex: Regex,
    replace: String,
}

impl RegexReplace {
    pub fn new(regex: Regex, replace: String) -> Self {
        RegexReplace { regex, replace }
    }

    pub fn apply(&self, value: &str) -> String {
        self.regex
            .replace_all(value, self.replace.as_str())
            .into_owned()
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<C> {
    Literal(String),
    Column(C),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{` in template (write `{{{{` for a literal brace)")]
    Unclosed,
    #[error("unmatched `}}` in template (write `}}}}` for a literal brace)")]
    Unmatched,
    #[error("empty `{{}}` in template: name a column")]
    Empty,
}

/// Split a template into literals and column names.
pub fn parse_template(s: &str) -> Result<Vec<Piece<String>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '}' => return Err(TemplateError::Unmatched),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(TemplateError::Unclosed),
                    }
                }
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err(TemplateError::Empty);
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Column(name));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

/// A template bound to column positions.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece<usize>>,
    /// Cut to this many characters (a `varchar(n)` or `char(n)` column).
    max: Option<usize>,
}

impl Template {
    pub fn new(pieces: Vec<Piece<usize>>) -> Self {
        Template { pieces, max: None }
    }

    /// Outputs cut to `max` characters, for a column that holds no more.
    pub fn fitted(mut self, max: usize) -> Self {
        self.max = Some(max);
        self
    }

    /// Positions of the columns this template reads.
    pub fn columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Column(i) => Some(*i),
            Piece::Literal(_) => None,
        })
    }

    /// Render with `value(i)` giving the anonymized value of column `i`.
    pub fn render<'a>(&self, value: impl Fn(usize) -> Option<&'a str>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Column(i) => out.push_str(value(*i).unwrap_or("")),
            }
        }
        if let Some((cut, _)) = self.max.and_then(|m| out.char_indices().nth(m)) {
            out.truncate(cut);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parsing() {
        assert_eq!(
            parse_template("{first_name}.{ last_name }@example.com {{x}}").unwrap(),
            vec![
                Piece::Column("first_name".to_string()),
                Piece::Literal(".".into()),
                Piece::Column("last_name".into()),
                Piece::Literal("@example.com {x}".into()),
            ]
        );
        assert_eq!(parse_template("{a"), Err(TemplateError::Unclosed));
        assert_eq!(parse_template("a}"), Err(TemplateError::Unmatched));
        assert_eq!(parse_template("{}"), Err(TemplateError::Empty));
    }

    #[test]
    fn template_renders_and_regex_replaces() {
        let t = Template::new(vec![
            Piece::Column(1),
            Piece::Literal("@".into()),
            Piece::Column(0),
        ]);
        let row = [Some("example.com"), Some("ann"), None];
        assert_eq!(t.render(|i| row[i]), "ann@example.com");
        assert_eq!(t.columns().collect::<Vec<_>>(), vec![1, 0]);
        let r = RegexReplace::new(Regex::new("[0-9]{4}$").unwrap(), "0000".into());
        assert_eq!(r.apply("ref-12345678"), "ref-12340000");
    }
}
