//! `portico check`: validates a configuration and proves every source and resource against
//! the real database, reporting every problem with its location.

use std::path::Path;

use crate::catalog::{plan, query::QuerySpec};
use crate::config::{self, Problem};
use crate::http::AppState;
use crate::source::SourceError;

/// Everything wrong with the configuration at `path`; empty when it is ready to serve.
pub async fn check(path: &Path) -> Vec<Problem> {
    let file = path.display().to_string();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => return e.problems,
    };
    let state = match AppState::from_config(&config, &file) {
        Ok(s) => s,
        Err(e) => return e.problems,
    };
    let mut problems = Vec::new();
    let mut reachable = std::collections::HashSet::new();
    for (name, source) in &state.sources {
        match source.ping().await {
            Ok(()) => {
                reachable.insert(name.clone());
            }
            Err(e) => problems.push(Problem {
                location: format!("sources.{name}"),
                message: format!("cannot query the database: {}", detail(&e)),
            }),
        }
    }
    for version in state.catalog.versions.values() {
        for resource in version.resources.values() {
            let Some(source) = state.sources.get(&resource.source) else {
                continue;
            };
            if !reachable.contains(&resource.source) {
                continue;
            }
            if source.dialect() == crate::source::Dialect::TSql {
                problems.extend(tsql_column_problems(&**source, version, resource).await);
            }
            let spec = QuerySpec::unfiltered(1);
            let Ok(plan) = plan::list(resource, &spec, Vec::new(), &Default::default()) else {
                continue;
            };
            let statement = source.dialect().select(&plan.select);
            if let Err(e) = source.query(statement.clone()).await {
                problems.push(Problem {
                    location: format!("versions.{}.resources.{}", version.name, resource.name),
                    message: format!("the database refused `{}`: {}", statement.sql, detail(&e)),
                });
            }
        }
    }
    problems
}

/// Columns of a SQL Server table that the resource cannot read as declared.
async fn tsql_column_problems(
    source: &dyn crate::source::Source,
    version: &crate::catalog::Version,
    resource: &crate::catalog::Resource,
) -> Vec<Problem> {
    use crate::source::mssql::columns;
    let crate::source::select::Relation::Table(table) = &resource.relation else {
        return Vec::new();
    };
    let Ok(rows) = source.query(columns::statement(table)).await else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for field in &resource.fields {
        let row = rows.iter().find(|row| {
            matches!(row.first(), Some(crate::source::Value::Text(name))
                if name.eq_ignore_ascii_case(field.column.as_bytes()))
        });
        if let Some(message) = row.and_then(|row| columns::problem(row, field.column_type)) {
            problems.push(Problem {
                location: format!(
                    "versions.{}.resources.{}.fields.{}",
                    version.name, resource.name, field.name
                ),
                message,
            });
        }
    }
    problems
}

fn detail(error: &SourceError) -> String {
    match error {
        SourceError::Unavailable { detail, .. } | SourceError::Query { detail, .. } => {
            detail.replace('\n', " ")
        }
        other => other.to_string(),
    }
}
