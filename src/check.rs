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

fn detail(error: &SourceError) -> String {
    match error {
        SourceError::Unavailable { detail, .. } | SourceError::Query { detail, .. } => {
            detail.replace('\n', " ")
        }
        other => other.to_string(),
    }
}
