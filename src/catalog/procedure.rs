//! Stored procedures compiled from configuration: typed parameters (through the same
//! transforms as fields), the scope that calls them, and what a writing one invalidates.

use indexmap::IndexMap;

use super::field::Field;
use crate::config::{Direction, Problem, ProcedureConfig};

/// A stored procedure served as `POST /{version}/procedures/{name}`.
#[derive(Debug, Clone)]
pub struct Procedure {
    /// Name in URLs.
    pub name: String,
    /// Source name.
    pub source: String,
    /// Name in the database.
    pub procedure: String,
    /// Human description.
    pub description: Option<String>,
    /// Scope a token needs.
    pub scope: String,
    /// Changes data.
    pub writes: bool,
    /// Resources whose cached answers a call invalidates.
    pub invalidates: Vec<String>,
    /// Parameters in call order, with their direction.
    pub parameters: Vec<(Field, Direction)>,
    /// Typed columns of the first result set (empty: untyped text).
    pub result: Vec<Field>,
}

/// Compiles the procedures of a version; `resources` are the version's resource names.
pub fn compile(
    procedures: &IndexMap<String, ProcedureConfig>,
    config: &crate::config::Config,
    resources: &[&str],
    at: &str,
    problems: &mut Vec<Problem>,
) -> IndexMap<String, Procedure> {
    let mut out = IndexMap::new();
    for (name, pc) in procedures {
        let at = format!("{at}.procedures.{name}");
        let before = problems.len();
        let mut problem =
            |location: String, message: String| problems.push(Problem { location, message });
        if !super::field::is_url_name(name) {
            problem(
                at.clone(),
                "procedure names use only a-z, 0-9, `_` and `-`".into(),
            );
        }
        let kind = config.sources.get(&pc.source).map(|s| s.kind);
        if !config.sources.contains_key(&pc.source) {
            problem(
                format!("{at}.source"),
                format!("no source named `{}` in [sources]", pc.source),
            );
        }
        if config.auth.is_none() || pc.scope.is_none() {
            problem(
                format!("{at}.scope"),
                "a procedure needs [auth] and the `scope` a token must hold to call it".into(),
            );
        }
        if pc.procedure.trim().is_empty() || pc.procedure.contains(['(', ')', ';', '{', '}']) {
            problem(
                format!("{at}.procedure"),
                "the procedure's name in the database, e.g. `dbo.RESCHEDULE_JOB`".into(),
            );
        }
        for target in &pc.invalidates {
            if !resources.contains(&target.as_str()) {
                problem(
                    format!("{at}.invalidates"),
                    format!("no resource `{target}` in this version"),
                );
            }
        }
        if !pc.invalidates.is_empty() && !pc.writes {
            problem(
                format!("{at}.invalidates"),
                "only a procedure with `writes = true` invalidates cached answers".into(),
            );
        }
        let parameters: Vec<(Field, Direction)> = pc
            .parameters
            .iter()
            .filter_map(|(pname, p)| {
                let location = format!("{at}.parameters.{pname}");
                if p.direction == Direction::Out && p.required {
                    problems.push(Problem {
                        location: location.clone(),
                        message: "an `out` parameter cannot be `required`".into(),
                    });
                }
                let field = super::field::compile_field(
                    pname,
                    &p.as_field(pname),
                    &[],
                    kind,
                    &location,
                    problems,
                )?;
                Some((field, p.direction))
            })
            .collect();
        let result: Vec<Field> = pc
            .result
            .iter()
            .filter_map(|(fname, fc)| {
                super::field::compile_field(
                    fname,
                    fc,
                    &[],
                    kind,
                    &format!("{at}.result.{fname}"),
                    problems,
                )
            })
            .collect();
        if problems.len() > before {
            continue;
        }
        out.insert(
            name.clone(),
            Procedure {
                name: name.clone(),
                source: pc.source.clone(),
                procedure: pc.procedure.clone(),
                description: pc.description.clone(),
                scope: pc.scope.clone().unwrap_or_default(),
                writes: pc.writes,
                invalidates: pc.invalidates.clone(),
                parameters,
                result,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    fn problems(procedure: &str) -> Vec<crate::config::Problem> {
        let auth = crate::config::TEST_AUTH;
        let text = format!(
            r#"
            [sources.erp]
            kind = "odbc"
            connection_string = "DSN=x"
            dialect = "mysql"
            {auth}
            [versions.v1.resources.notes]
            source = "erp"
            table = "NOTES"
            key = ["id"]
            [versions.v1.resources.notes.fields]
            id = {{ column = "NOTE_ID", type = "integer" }}
            [versions.v1.procedures.summary]
            source = "erp"
            {procedure}
            "#
        );
        let config = crate::config::parse("t.toml", &text, &|_| None).expect("parses");
        crate::catalog::compile(&config).err().unwrap_or_default()
    }

    #[test]
    fn procedure_mistakes_are_reported_where_they_are_written() {
        let ok = "procedure = \"dbo.SUMMARY\"\nscope = \"s\"\nwrites = true\ninvalidates = [\"notes\"]\nparameters = { id = { type = \"integer\", required = true }, n = { type = \"integer\", direction = \"out\" } }";
        assert!(problems(ok).is_empty(), "{:?}", problems(ok));
        let p = problems("procedure = \"x(); DROP\"\ninvalidates = [\"jobs\"]\nparameters = { n = { type = \"integer\", direction = \"out\", required = true } }");
        let at = |suffix: &str| {
            p.iter()
                .any(|q| q.location == format!("versions.v1.procedures.summary{suffix}"))
        };
        assert!(
            at(".procedure") && at(".scope") && at(".invalidates") && at(".parameters.n"),
            "{p:?}"
        );
    }
}
