//! Each ODBC source within its driver's capability profile: built from the declared
//! capabilities, where to probe the rest and the snapshot bounds; and what `check` says of the
//! resources that would need what a driver lacks.

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::{plan, query::QuerySpec, Catalog};
use crate::config::{DialectName, Problem, SourceConfig};
use crate::source::capability::{needs, Capability, ProbeTarget, Profile, ProfiledSource};
use crate::source::select::Relation;
use crate::source::snapshot::SnapshotSettings;
use crate::source::{ColumnType, Source};

/// `source` (named `name`) within the profile `config` declares, probed (when on) on the
/// first table a resource of it reads.
pub(super) fn profiled(
    name: &str,
    config: &SourceConfig,
    source: Arc<dyn Source>,
    catalog: Option<&Catalog>,
) -> ProfiledSource {
    let probe_on = config
        .probe
        .unwrap_or(config.dialect_name() == DialectName::Generic);
    let target = catalog
        .filter(|_| probe_on)
        .and_then(|c| probe_target(name, c));
    let snapshots = config.snapshot.map(|s| SnapshotSettings {
        max_rows: s.max_rows,
        ttl: s.ttl,
    });
    ProfiledSource::new(
        source,
        Profile::declared(&config.capabilities),
        snapshots,
        target,
    )
}

/// The first table (in configuration order) a resource of `source` reads, with its first key
/// column.
fn probe_target(source: &str, catalog: &Catalog) -> Option<ProbeTarget> {
    catalog
        .versions
        .values()
        .flat_map(|v| v.resources.values())
        .filter(|r| r.source == source)
        .find_map(|r| {
            let Relation::Table(table) = &r.relation else {
                return None;
            };
            let field = &r.fields[*r.key.first()?];
            Some(ProbeTarget {
                table: table.clone(),
                column: field.column.clone(),
                column_type: field.column_type,
            })
        })
}

/// What `check` says of the capability profiles beyond reading each resource once: problems
/// (writes a read-only driver is asked for, change feeds it cannot page) and warnings (filters
/// that would be refused).
#[derive(Debug, Default)]
pub struct Findings {
    /// Writes and change feeds the driver cannot do.
    pub problems: Vec<Problem>,
    /// Some filters of the resource would be refused.
    pub warnings: Vec<Problem>,
}

/// Probes each profiled source (once) and names every resource whose requests need what its
/// source's driver lacks, and every write a read-only driver is asked for.
pub async fn findings(
    catalog: &Catalog,
    profiled: &HashMap<String, Arc<ProfiledSource>>,
) -> Findings {
    let mut findings = Findings::default();
    for source in profiled.values() {
        source.probe().await;
    }
    for version in catalog.versions.values() {
        for resource in version.resources.values() {
            let Some(source) = profiled.get(&resource.source) else {
                continue;
            };
            let profile = source.profile();
            let at = format!("versions.{}.resources.{}", version.name, resource.name);
            if resource.writes.is_some() && !profile.has(Capability::Writes) {
                findings.problems.push(Problem {
                    location: format!("{at}.writes"),
                    message: format!(
                        "source `{}` cannot write: it lacks {}; remove `writes` (the driver is \
                         read-only)",
                        resource.source,
                        profile.explain(&[Capability::Writes])
                    ),
                });
            }
            let feed_needs = [Capability::OrderBy, Capability::Parameters];
            let feed_lacks: Vec<Capability> = feed_needs
                .into_iter()
                .filter(|c| !profile.has(*c))
                .collect();
            if resource.changes && !feed_lacks.is_empty() {
                // A feed reads the table page by page in key order, never from a snapshot.
                findings.problems.push(Problem {
                    location: format!("{at}.changes"),
                    message: format!(
                        "a change feed reads the table in key order, page after page: source \
                         `{}`'s driver lacks {}; remove `changes`",
                        resource.source,
                        profile.explain(&feed_lacks)
                    ),
                });
            }
            let table = matches!(resource.relation, Relation::Table(_));
            if source.serves_snapshots() && table {
                continue;
            }
            let fix = if table {
                format!(
                    "serve its tables from memory: [sources.{}] snapshot = {{ max_rows = 50000, \
                     ttl = \"5m\" }}",
                    resource.source
                )
            } else {
                "a `query` resource is never read whole: serve the table it reads as a table \
                 resource over a source with a snapshot"
                    .to_string()
            };
            let lacking = |needed: Vec<Capability>| -> Vec<Capability> {
                needed.into_iter().filter(|c| !profile.has(*c)).collect()
            };
            let (always, filters) = resource_needs(resource, source.dialect());
            if !lacking(always).is_empty() {
                // Its lists fail whole: `check` reports that when it reads the resource.
                continue;
            }
            let filters = lacking(filters);
            if !filters.is_empty() {
                findings.warnings.push(Problem {
                    location: at,
                    message: format!(
                        "some filters will be refused (501): source `{}`'s driver lacks {}; \
                         {fix}",
                        resource.source,
                        profile.explain(&filters)
                    ),
                });
            }
        }
    }
    findings
}

/// What serving `resource` asks of its driver: for every list and key lookup (ordered,
/// limited, keys and keyset positions bound as parameters), and for some filters only (IN
/// lists, comparisons of the filterable fields' types).
fn resource_needs(
    resource: &crate::catalog::Resource,
    dialect: crate::source::Dialect,
) -> (Vec<Capability>, Vec<Capability>) {
    let mut always = Vec::new();
    let spec = QuerySpec::unfiltered(1);
    if let Ok(plan) = plan::list(resource, &spec, Vec::new(), &Default::default(), "") {
        always.extend(needs(&plan.select, dialect));
    }
    always.push(Capability::Parameters);
    let mut filters = Vec::new();
    for field in resource.fields.iter().filter(|f| f.filterable) {
        filters.push(Capability::InList);
        filters.push(Capability::IsNull);
        match field.column_type {
            ColumnType::Float | ColumnType::Decimal | ColumnType::Money => {
                filters.push(Capability::FloatCompare)
            }
            ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampOffset => {
                filters.push(Capability::DateCompare)
            }
            _ => {}
        }
    }
    let unique = |list: Vec<Capability>| {
        let mut out: Vec<Capability> = Vec::new();
        for c in list {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    };
    let always = unique(always);
    let filters = unique(filters)
        .into_iter()
        .filter(|c| !always.contains(c))
        .collect();
    (always, filters)
}
