//! `portico check`: validates a configuration and proves every source and resource against
//! the real database, reporting every problem with its location: the columns each resource
//! names exist, its key is unique in the data, its declared types fit a sample of its rows.

mod columns;
mod keys;
mod types;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::app::{Inspection, Services};
use crate::catalog::{plan, query::QuerySpec, Catalog, Resource};
use crate::config::{Config, Problem};
use crate::source::select::Relation;
use crate::source::{Source, SourceError};

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

/// Which resources' keys are probed for duplicates and NULLs (a full scan of the table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyProbe {
    /// Every resource's.
    #[default]
    All,
    /// Every resource's but these (`name` in any version, or `version.name`).
    Except(Vec<String>),
    /// None.
    Off,
}

impl KeyProbe {
    fn covers(&self, version: &str, resource: &str) -> bool {
        match self {
            KeyProbe::All => true,
            KeyProbe::Off => false,
            KeyProbe::Except(names) => !names
                .iter()
                .any(|n| n == resource || *n == format!("{version}.{resource}")),
        }
    }
}

/// How far `portico check` reads into the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Whose keys are proven unique.
    pub key_probe: KeyProbe,
    /// Rows read per resource to prove the declared types (0: none).
    pub sample_rows: usize,
    /// Only these resources (by name, any version) are proven; `None`: every one.
    pub only: Option<BTreeSet<String>>,
    /// A source that cannot be reached is logged, not a problem (a reload during an outage:
    /// the breaker answers for it).
    pub unreachable_is_problem: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            key_probe: KeyProbe::All,
            sample_rows: DEFAULT_SAMPLE_ROWS,
            only: None,
            unreachable_is_problem: true,
        }
    }
}

/// What a reload proves before it swaps a file in: each new or changed resource's columns
/// exist, its query runs and its declared types fit a sample, as `portico check` proves them.
/// Keys are not scanned for duplicates (a full scan of each table on every reload is more
/// than a legacy database should pay; `portico check` does it), and a source that cannot be
/// reached is left to its breaker rather than refusing the file.
pub fn reload_prover() -> crate::app::Prover {
    std::sync::Arc::new(|proof: crate::app::Proof<'_>| {
        Box::pin(async move {
            let options = Options {
                key_probe: KeyProbe::Off,
                only: Some(proof.resources.clone()),
                unreachable_is_problem: false,
                ..Options::default()
            };
            let data = Data {
                catalog: proof.catalog,
                sources: proof.sources,
                config: Some(proof.config),
                feeds: proof.feeds,
            };
            let mut report = Report::default();
            databases(&data, &options, &mut report).await;
            report.problems
        })
    })
}

/// Rows sampled per resource unless `--sample-rows` says otherwise.
pub const DEFAULT_SAMPLE_ROWS: usize = 1000;

/// Everything wrong with the configuration at `path`; empty when it is ready to serve.
pub async fn check(path: &Path) -> Vec<Problem> {
    report(path).await.problems
}

/// Checks the configuration at `path` against its databases and identity provider.
pub async fn report(path: &Path) -> Report {
    report_with(path, &Options::default()).await
}

/// Checks the configuration at `path` with `options`. A configuration with problems is still
/// proven as far as it built: the sources that could be made, the resources that compiled.
pub async fn report_with(path: &Path, options: &Options) -> Report {
    let mut report = Report::default();
    let (config, services) = match crate::app::inspect(path) {
        Inspection::Ready(ready) => *ready,
        Inspection::Broken {
            problems,
            catalog,
            sources,
            config,
        } => {
            report.problems = problems;
            let data = Data {
                catalog: &catalog,
                sources: &sources,
                config: config.as_deref(),
                feeds: &[],
            };
            databases(&data, options, &mut report).await;
            return report;
        }
    };
    if let (Some(auth), Some(verifier)) = (&config.auth, &services.verifier) {
        identity_provider(auth, verifier, &mut report).await;
    }
    // `serve` opens the store; proven here without writing (no file or table is created).
    let state = match &services.state {
        Some(crate::app::StateLocation::Sqlite(path)) => {
            Some(("state.path", crate::state::SqliteStore::probe(path)))
        }
        Some(crate::app::StateLocation::Postgres { url, .. }) => {
            Some(("state.url", crate::state::PgStore::probe(url).await))
        }
        None => None,
    };
    if let Some((location, Err(e))) = state {
        report.problems.push(Problem {
            location: location.into(),
            message: e.to_string(),
        });
    }
    let data = Data {
        catalog: &services.catalog,
        sources: &services.sources,
        config: Some(&config),
        feeds: &services.feeds,
    };
    databases(&data, options, &mut report).await;
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

/// What the databases are checked against.
struct Data<'a> {
    catalog: &'a Catalog,
    sources: &'a HashMap<String, Arc<dyn Source>>,
    config: Option<&'a Config>,
    feeds: &'a [Arc<crate::changes::Feed>],
}

/// Every source answers; every resource's columns exist, its query runs, its key is unique in
/// the data and its declared types fit a sample of its rows.
async fn databases(data: &Data<'_>, options: &Options, report: &mut Report) {
    let mut reachable = HashSet::new();
    for (name, source) in data.sources {
        match source.ping().await {
            Ok(()) => {
                reachable.insert(name.clone());
            }
            Err(e) if options.unreachable_is_problem => report.problems.push(Problem {
                location: format!("sources.{name}"),
                message: format!("cannot query the database: {}", detail(&e)),
            }),
            Err(e) => tracing::warn!(
                source = %name,
                error = %detail(&e),
                "cannot reach the database: its resources are not proven"
            ),
        }
    }
    let known = relation_columns(data, &reachable).await;
    for version in data.catalog.versions.values() {
        for resource in version.resources.values() {
            if options
                .only
                .as_ref()
                .is_some_and(|only| !only.contains(&resource.name))
            {
                continue;
            }
            if let Some(source) = data.sources.get(&resource.source) {
                if reachable.contains(&resource.source) {
                    let target = Target {
                        version: &version.name,
                        resource,
                        source: &**source,
                        known: known.get(&resource.source, &resource.relation),
                    };
                    prove_resource(&target, options, report).await;
                }
            }
        }
    }
    report.problems.extend(feed_columns(data, &known));
    if let KeyProbe::Except(names) = &options.key_probe {
        report.warnings.extend(unknown_names(data.config, names));
    }
}

/// What each source says of the columns of the relations read from it.
struct RelationColumns(HashMap<(String, String), columns::Known>);

impl RelationColumns {
    fn get(&self, source: &str, relation: &Relation) -> Option<&columns::Known> {
        self.0
            .get(&(source.to_string(), columns::relation_key(relation)))
    }
}

/// Reads the columns of every relation a resource or a feed reads, once per source.
async fn relation_columns(data: &Data<'_>, reachable: &HashSet<String>) -> RelationColumns {
    let mut known = HashMap::new();
    for name in reachable {
        let Some(source) = data.sources.get(name) else {
            continue;
        };
        let resources = data
            .catalog
            .versions
            .values()
            .flat_map(|v| v.resources.values())
            .filter(|r| r.source == *name)
            .map(|r| r.relation.clone());
        let feeds = data
            .feeds
            .iter()
            .filter(|f| f.source == *name)
            .map(|f| Relation::Table(f.table.clone()));
        let mut seen = HashSet::new();
        let relations: Vec<Relation> = resources
            .chain(feeds)
            .filter(|r| seen.insert(columns::relation_key(r)))
            .collect();
        let settings = data.config.and_then(|c| c.sources.get(name));
        for (key, found) in columns::read(settings, &**source, relations).await {
            known.insert((name.clone(), key), found);
        }
    }
    RelationColumns(known)
}

/// One resource to prove against its source.
struct Target<'a> {
    version: &'a str,
    resource: &'a Resource,
    source: &'a dyn Source,
    /// Its relation's columns, when the source could say.
    known: Option<&'a columns::Known>,
}

/// Proves one resource: its columns exist, its query runs, its key is unique, its types fit.
async fn prove_resource(target: &Target<'_>, options: &Options, report: &mut Report) {
    let Target {
        version,
        resource,
        source,
        ..
    } = *target;
    let dialect = source.dialect();
    let at = format!("versions.{version}.resources.{}", resource.name);
    let missing = match target.known {
        Some(columns::Known::Columns { names, .. }) => {
            columns::missing(resource, dialect, names, &at)
        }
        _ => columns::Missing::default(),
    };
    report.problems.extend(missing.problems);
    if dialect == crate::source::Dialect::TSql {
        report
            .problems
            .extend(tsql_column_problems(source, version, resource).await);
    }
    // A missing column already says why the query would fail (or, on SQLite, lie).
    if missing.fields.is_empty() {
        let spec = QuerySpec::unfiltered(1);
        if let Ok(plan) = plan::list(resource, &spec, Vec::new(), &Default::default(), "") {
            let statement = dialect.select(&plan.select);
            if let Err(e) = source.select(plan.select).await {
                let (location, message) = match (e, &resource.relation) {
                    // What the driver cannot do (its capability profile, a snapshot's bound).
                    (e @ SourceError::Unsupported { .. }, _) => (at, e.to_string()),
                    (e, Relation::Table(table)) if table.contains('.') => {
                        (format!("{at}.table"), dotted_table(table, &detail(&e)))
                    }
                    (e, _) => (
                        at,
                        format!("the database refused `{}`: {}", statement.sql, detail(&e)),
                    ),
                };
                report.problems.push(Problem { location, message });
                return;
            }
        }
    }
    let key_there = resource.key.iter().all(|i| !missing.fields.contains(i));
    if key_there && options.key_probe.covers(version, &resource.name) {
        match keys::probe(source, resource, &at).await {
            Ok(proof) => {
                report.problems.extend(proof.problems);
                report.warnings.extend(proof.warnings);
            }
            // Neither the database nor Portico could read the keys: not proven, not wrong.
            Err(unproven) => report.warnings.push(Problem {
                location: format!("{at}.key"),
                message: format!(
                    "cannot prove the key unique (skip with --skip-key-probe {}): {}{}",
                    resource.name,
                    detail(&unproven.grouped),
                    unproven
                        .ordered
                        .map(|e| format!(
                            "; reading the keys in key order failed too: {}",
                            detail(&e)
                        ))
                        .unwrap_or_default()
                ),
            }),
        }
    }
    let dated = |column: &str| match target.known {
        Some(columns::Known::Columns { dated, .. }) => dated
            .iter()
            .any(|name| columns::resolves(dialect, column, name)),
        _ => false,
    };
    let sampled = types::sample(
        source,
        resource,
        &missing.fields,
        &dated,
        options.sample_rows,
        &at,
    );
    match sampled.await {
        Ok(found) => report.problems.extend(found),
        Err(e) => report.warnings.push(Problem {
            location: at,
            message: format!(
                "cannot sample its rows to prove the declared types (skip with \
                 --sample-rows 0): {}",
                detail(&e)
            ),
        }),
    }
}

/// Why a dotted table name was not found: each `.` is a qualifier, so it names another table.
fn dotted_table(table: &str, detail: &str) -> String {
    let (schema, name) = table.rsplit_once('.').unwrap_or(("", table));
    format!(
        "`{table}` is read as table `{name}` of schema `{schema}` (a `.` in a configured name \
         is a qualifier), and the database cannot read it ({detail}); a table whose own name \
         contains `.` is served through a `query` resource that selects from it"
    )
}

/// Each feed's `changes.column` that its table lacks (a column no field reads: a field's
/// column is reported at the field).
fn feed_columns(data: &Data<'_>, known: &RelationColumns) -> Vec<Problem> {
    let mut problems = Vec::new();
    for feed in data.feeds {
        let (Some(column), Some(view)) = (feed.column, feed.views.first()) else {
            continue;
        };
        let Some((name, _)) = feed.columns.get(column) else {
            continue;
        };
        let table = Relation::Table(feed.table.clone());
        let (Some(columns::Known::Columns { names: found, .. }), Some(source)) = (
            known.get(&feed.source, &table),
            data.sources.get(&feed.source),
        ) else {
            continue;
        };
        let of_field = data
            .catalog
            .resource(&view.version, &view.resource)
            .is_some_and(|r| r.fields.iter().any(|f| f.column == *name));
        let dialect = source.dialect();
        if !of_field && !found.iter().any(|c| columns::resolves(dialect, name, c)) {
            problems.push(Problem {
                location: format!(
                    "versions.{}.resources.{}.changes.column",
                    view.version, view.resource
                ),
                message: columns::absent_message(
                    name,
                    &format!("table `{}`", feed.table),
                    dialect,
                    found,
                ),
            });
        }
    }
    problems
}

/// The `--skip-key-probe` names that name no resource of the file.
fn unknown_names(config: Option<&Config>, names: &[String]) -> Vec<Problem> {
    let Some(config) = config else {
        return Vec::new();
    };
    names
        .iter()
        .filter(|name| {
            let (version, resource) = name.split_once('.').unwrap_or(("", name));
            !config.versions.iter().any(|(v, declared)| {
                (version.is_empty() || v == version) && declared.resources.contains_key(resource)
            })
        })
        .map(|name| Problem {
            location: String::new(),
            message: format!("--skip-key-probe names `{name}`, which is no resource"),
        })
        .collect()
}

/// Columns of a SQL Server table that the resource cannot read as declared.
async fn tsql_column_problems(
    source: &dyn crate::source::Source,
    version: &str,
    resource: &Resource,
) -> Vec<Problem> {
    use crate::source::mssql::columns;
    let Relation::Table(table) = &resource.relation else {
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
                    "versions.{version}.resources.{}.fields.{}",
                    resource.name, field.name
                ),
                message,
            });
        }
    }
    problems
}

/// What a source's error says, printable on one line (whatever driver it came from).
fn detail(error: &SourceError) -> String {
    use crate::source::diagnostic::printable;
    match error {
        SourceError::Unavailable { detail, .. } | SourceError::Query { detail, .. } => {
            printable(detail)
        }
        other => printable(&other.to_string()),
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
