//! `${VAR}` interpolation in string values, so secrets never live in the file.

use super::Problem;

/// Replaces `${NAME}` (or `${NAME:-default}`) in every string of `value` using `env`; `$${`
/// stands for a literal `${`. A variable that is not set and has no default is a problem naming
/// it and where it is used.
pub fn interpolate(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => problems.push(Problem {
                location: path.to_string(),
                message,
            }),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &child, env, problems);
            }
        }
        _ => {}
    }
}

/// Whether `value` came wholly from the environment: `raw` (as written in the file) is one
/// `${VAR}` (or `${VAR:-default}` whose default was not used) and nothing else. A literal, a
/// used default, or text around the reference is as public as the file itself.
pub fn wholly_from_environment(raw: &str, value: &str) -> bool {
    let single = raw
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|inner| !inner.contains(['$', '{', '}']));
    single && expand(raw, &|_| None).map_or(true, |alone| alone != value)
}

fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_string())?;
            let (name, default) = match tail[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&tail[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            let value = env(name)
                .or_else(|| default.map(str::to_string))
                .ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "ERP_PASSWORD").then(|| "s3cr\"t".to_string())
    }

    #[test]
    fn replaces_variables_and_keeps_escapes() {
        assert_eq!(
            expand("PWD=${ERP_PASSWORD};x=$${LITERAL};$5", &env).unwrap(),
            "PWD=s3cr\"t;x=${LITERAL};$5"
        );
    }

    #[test]
    fn a_missing_variable_is_named_with_its_location() {
        let mut value: toml::Value =
            toml::from_str("[sources.erp]\nconnection_string = \"PWD=${NOPE}\"").unwrap();
        let mut problems = Vec::new();
        interpolate(&mut value, "", &env, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].location, "sources.erp.connection_string");
        assert!(problems[0].message.contains("`NOPE`"));
    }

    #[test]
    fn a_default_applies_only_when_the_variable_is_unset() {
        assert_eq!(expand("${NOPE:-x.db}", &env).unwrap(), "x.db");
        assert_eq!(expand("${ERP_PASSWORD:-x}", &env).unwrap(), "s3cr\"t");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
    }

    #[test]
    fn only_a_lone_reference_set_in_the_environment_counts_as_from_it() {
        assert!(wholly_from_environment("${SECRET}", "from-the-environment"));
        assert!(wholly_from_environment(
            "${SECRET:-abc}",
            "from-the-environment"
        ));
        assert!(!wholly_from_environment("abc", "abc"));
        assert!(!wholly_from_environment("${NOPE:-abc}", "abc"));
        // The file holds all but the first character.
        assert!(!wholly_from_environment(
            "${PFX}portico-demo-secret",
            "xportico-demo-secret"
        ));
        assert!(!wholly_from_environment("${A}${B}", "ab"));
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("${", &env).is_err());
        assert!(expand("${A B}", &env).is_err());
    }
}
