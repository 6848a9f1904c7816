//! `portico check`: validates a configuration and proves every source and resource against
//! the real database, reporting every problem with its location.

use std::path::Path;

use crate::app::Services;
use crate::catalog::{plan, query::QuerySpec};
use crate::config::Problem;
use crate::source::SourceError;

/// What `portico check` found: problems (exit 1), warnings, and facts worth showing.
#[derive(Debug, Default)]
pub struct Report {
    /// What prevents serving, each at its location.
    pub problems: Vec<Problem>,
    /// What works but is risky.
    pub warnings: Vec<Problem>,
    /// What was proven, for the operator to read (the identity provider's keys).
    pub notes: Vec<String>,
}

/// Everything wrong with the configuration at `path`; empty when it is ready to serve.
pub async fn check(path: &Path) -> Vec<Problem> {
    report(path).await.problems
}

/// Checks the configuration at `path` against its databases and identity provider.
pub async fn report(path: &Path) -> Report {
    let (config, services) = match crate::app::load(path) {
        Ok(built) => built,
        Err(e) => {
            return Report {
                problems: e.problems,
                ..Report::default()
            }
        }
    };
    let mut report = Report::default();
    if let (Some(auth), Some(verifier)) = (&config.auth, &services.verifier) {
        identity_provider(auth, verifier, &mut report).await;
    }
    if let Some(path) = &services.state_path {
        // `serve` opens it; proven here without writing (no file is created).
        if let Err(e) = crate::state::SqliteStore::probe(path) {
            report.problems.push(Problem {
                location: "state.path".into(),
                message: e.to_string(),
            });
        }
    }
    report.problems.extend(databases(&services).await);
    let drivers = crate::app::capabilities::findings(&services.catalog, &services.profiled).await;
    report.problems.extend(drivers.problems);
    report.warnings.extend(drivers.warnings);
    report.warnings.extend(unknown_bounds(&services));
    report
}

/// Written decimal fields whose precision neither the file nor the catalog gives: writes are
/// then bounded by their `scale` only, and the document cannot state the column's width.
fn unknown_bounds(services: &Services) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for version in services.catalog.versions.values() {
        for resource in version.resources.values().filter(|r| r.writes.is_some()) {
            for field in &resource.fields {
                let decimal = matches!(
                    field.field_type,
                    crate::config::FieldType::Decimal | crate::config::FieldType::Money
                );
                if decimal && !field.read_only && field.limits.digits.is_none() {
                    warnings.push(Problem {
                        location: format!(
                            "versions.{}.resources.{}.fields.{}",
                            version.name, resource.name, field.name
                        ),
                        message: "its precision is unknown (the catalog did not give it): declare \
                                  column_type = \"decimal(p,s)\" so writes and the document \
                                  are bounded by the column"
                            .into(),
                    });
                }
            }
        }
    }
    warnings
}

/// Fetches the identity provider's discovery document and keys as `serve` would: the
/// discovery `issuer` must be `[auth] issuer` exactly, and the usable keys are listed.
async fn identity_provider(
    auth: &crate::config::AuthConfig,
    verifier: &crate::auth::Verifier,
    report: &mut Report,
) {
    let (Some(jwks), Some(settings)) = (verifier.jwks(), &auth.jwks) else {
        return;
    };
    let location = settings.discovery.as_ref().or(settings.url.as_ref());
    if let Some(url) = location.filter(|u| plain_http_off_loopback(u)) {
        report.warnings.push(Problem {
            location: "auth.jwks".into(),
            message: format!(
                "`{url}` is plain http: anyone on the network path can substitute keys; use https"
            ),
        });
    }
    let inspection = match jwks.inspect().await {
        Ok(found) => found,
        Err(e) => {
            report.problems.push(Problem {
                location: "auth.jwks".into(),
                message: format!("cannot fetch the identity provider's keys: {e}"),
            });
            return;
        }
    };
    if let Some(published) = &inspection.issuer {
        if *published != auth.issuer {
            report.problems.push(Problem {
                location: "auth.issuer".into(),
                message: format!(
                    "the identity provider's discovery document names the issuer `{published}`, \
                     which its tokens carry in `iss`; set issuer = \"{published}\" (exactly, \
                     trailing slash included)"
                ),
            });
        }
    }
    if inspection.usable.is_empty() {
        report.problems.push(Problem {
            location: "auth.jwks".into(),
            message: format!(
                "{} publishes no key Portico can use with algorithms {:?}",
                inspection.jwks_url, settings.algorithms
            ),
        });
    }
    let mut by_algorithm: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for key in &inspection.usable {
        by_algorithm
            .entry(format!("{:?}", key.algorithm))
            .or_default()
            .push(key.kid.clone().unwrap_or_else(|| "(no kid)".into()));
    }
    for (algorithm, kids) in by_algorithm {
        report.notes.push(format!(
            "auth.jwks: {algorithm} keys from {}: {}",
            inspection.jwks_url,
            kids.join(", ")
        ));
    }
    for skipped in inspection.skipped {
        report.notes.push(format!("auth.jwks: skipped {skipped}"));
    }
}

/// An `http:` URL whose host is not loopback.
fn plain_http_off_loopback(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or_default();
    let loopback = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    parsed.scheme() == "http" && !loopback
}

/// Every source answers, and every resource's query runs.
async fn databases(services: &Services) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut reachable = std::collections::HashSet::new();
    for (name, source) in &services.sources {
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
    for version in services.catalog.versions.values() {
        for resource in version.resources.values() {
            let Some(source) = services.sources.get(&resource.source) else {
                continue;
            };
            if !reachable.contains(&resource.source) {
                continue;
            }
            if source.dialect() == crate::source::Dialect::TSql {
                problems.extend(tsql_column_problems(&**source, version, resource).await);
            }
            let spec = QuerySpec::unfiltered(1);
            let Ok(plan) = plan::list(resource, &spec, Vec::new(), &Default::default(), "") else {
                continue;
            };
            let statement = source.dialect().select(&plan.select);
            match source.select(plan.select).await {
                Ok(_) => {}
                // What the driver cannot do (its capability profile, a snapshot's bound).
                Err(e @ SourceError::Unsupported { .. }) => problems.push(Problem {
                    location: format!("versions.{}.resources.{}", version.name, resource.name),
                    message: e.to_string(),
                }),
                Err(e) => problems.push(Problem {
                    location: format!("versions.{}.resources.{}", version.name, resource.name),
                    message: format!("the database refused `{}`: {}", statement.sql, detail(&e)),
                }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_discovery_is_flagged_only_off_loopback() {
        for url in ["http://login.example.com/", "http://10.0.0.5:8080/realms/x"] {
            assert!(plain_http_off_loopback(url), "{url}");
        }
        for url in [
            "https://login.example.com/",
            "http://127.0.0.1:9000",
            "http://[::1]:9000/",
            "http://localhost:8080/realms/x",
        ] {
            assert!(!plain_http_off_loopback(url), "{url}");
        }
    }
}
