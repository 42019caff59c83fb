//! `${VAR}` and `${VAR:-default}` in string values of the rules file. `$$` is a literal `$`.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("environment variable {0} is not set (give a default with ${{{0}:-default}})")]
    Unset(String),
    #[error("unclosed `${{` (write `$$` for a literal `$`)")]
    Unclosed,
    #[error("invalid variable name {0:?} in `${{...}}`")]
    BadName(String),
}

pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or(InterpError::Unclosed)?;
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(InterpError::BadName(name.to_string()));
            }
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(InterpError::Unset(name.to_string())),
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn table() {
        let ok = [
            ("postgres://${HOST}/app", "postgres://db.internal/app"),
            ("${MISSING:-staging.sql}", "staging.sql"),
            ("${EMPTY:-fallback}", "fallback"),
            ("price $5 and $$ and $${HOST}", "price $5 and $ and ${HOST}"),
            ("${HOST:-x}", "db.internal"),
        ];
        for (input, want) in ok {
            assert_eq!(interpolate(input, &env).unwrap(), want, "{input}");
        }
        assert_eq!(
            interpolate("${MISSING}", &env).unwrap_err().to_string(),
            "environment variable MISSING is not set (give a default with ${MISSING:-default})"
        );
        assert_eq!(interpolate("${HOST", &env), Err(InterpError::Unclosed));
        assert_eq!(
            interpolate("${1X}", &env),
            Err(InterpError::BadName("1X".into()))
        );
    }
}
