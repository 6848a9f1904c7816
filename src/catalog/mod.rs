//! The API model compiled from configuration: versions, resources, fields, client queries.

pub mod access;
pub mod aggregate;
mod build;
pub mod cursor;
pub mod date;
pub mod expand;
pub mod field;
pub mod float;
pub mod limits;
pub mod plan;
pub mod procedure;
pub mod query;
pub mod write;

use indexmap::IndexMap;

pub use build::{compile, compile_partial};
pub use field::{Field, RESERVED};

use crate::source::select::Relation;

/// Every version Portico serves.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Versions by name, in configuration order.
    pub versions: IndexMap<String, Version>,
    /// What the sources' own catalogs said of each table read, by `(source, table)`, when
    /// the limits were completed (a reload falls back on it when a database is down).
    pub read_columns: std::collections::HashMap<(String, String), Vec<limits::CatalogColumn>>,
}

impl Catalog {
    /// Looks up a resource of a version.
    pub fn resource(&self, version: &str, resource: &str) -> Option<&Resource> {
        self.versions.get(version)?.resources.get(resource)
    }
}

/// A named set of resources with its own field names and shapes.
#[derive(Debug, Clone)]
pub struct Version {
    /// Name (`v1`).
    pub name: String,
    /// Human description.
    pub description: Option<String>,
    /// When it was deprecated, if it is.
    pub deprecated: Option<date::Date>,
    /// When it goes away, if that is announced.
    pub sunset: Option<date::Date>,
    /// `Deprecation` (RFC 9745) and `Sunset` (RFC 8594) header values every response of a
    /// deprecated version carries, formatted once.
    pub deprecation_headers: Vec<(&'static str, String)>,
    /// Resources by name.
    pub resources: IndexMap<String, Resource>,
    /// Stored procedures by name.
    pub procedures: IndexMap<String, procedure::Procedure>,
}

/// A REST resource over a legacy table, view or query.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Version it belongs to.
    pub version: String,
    /// Name in URLs.
    pub name: String,
    /// Human description.
    pub description: Option<String>,
    /// Source name.
    pub source: String,
    /// Table or query.
    pub relation: Relation,
    /// Fields in response order.
    pub fields: Vec<Field>,
    /// Indexes into `fields` of the key, in URL order.
    pub key: Vec<usize>,
    /// Default sort: field index and descending.
    pub default_sort: Vec<(usize, bool)>,
    /// Page size without `limit`.
    pub default_limit: usize,
    /// Largest `limit`.
    pub max_limit: usize,
    /// Most rows one export (NDJSON, CSV) streams.
    pub max_export_rows: u64,
    /// Rows an export reads per statement.
    pub export_chunk_rows: usize,
    /// Most filters and filter values a request may send.
    pub query_limits: query::QueryLimits,
    /// How long responses are cached; zero: not cached.
    pub cache_ttl: std::time::Duration,
    /// How long past its TTL a response may be served while the source fails.
    pub stale_if_error: Option<std::time::Duration>,
    /// Parent resource and the index of this resource's field holding the parent key.
    pub parent: Option<(String, usize)>,
    /// Scopes, row policies and field masks.
    pub access: access::ResourceAccess,
    /// What clients may write; `None`: read-only.
    pub writes: Option<write::WriteRules>,
    /// A change feed watches the table (`GET /{v}/{resource}/changes`).
    pub changes: bool,
    /// Related rows `?expand=` may serve, by relation name.
    pub relations: IndexMap<String, expand::Relationship>,
    /// `GET /{v}/{resource}/aggregate` is served.
    pub aggregates: bool,
}

/// `Deprecation` and `Sunset` header values for a version's dates.
pub fn deprecation_headers(
    deprecated: Option<date::Date>,
    sunset: Option<date::Date>,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(date) = deprecated {
        headers.push((
            "deprecation",
            format!("@{}", date.days_since_epoch() * 86_400),
        ));
    }
    if let Some(date) = sunset {
        headers.push(("sunset", date.http_date()));
    }
    headers
}

impl Catalog {
    /// Names of the resources (any version) whose cached answers a write to `table` of
    /// `source` can change: those over the table, those nested under them, and every
    /// resource over a query of that source (nobody knows what a query reads).
    pub fn affected_by_write(&self, source: &str, table: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let resources = || self.versions.values().flat_map(|v| v.resources.values());
        for r in resources().filter(|r| r.source == source) {
            let hit = match &r.relation {
                Relation::Table(t) => t.eq_ignore_ascii_case(table),
                Relation::Query(_) => true,
            };
            if hit && !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
        for r in resources() {
            let nested = r.parent.as_ref().is_some_and(|(p, _)| names.contains(p));
            if nested && !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
        names
    }
}

/// What the database's catalog could not tell about a table resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogGap {
    /// The catalog lists no table of that name.
    Table {
        /// Where in configuration (`versions.v1.resources.jobs`).
        location: String,
        /// The table.
        table: String,
    },
    /// The table has no column of a field's name.
    Column {
        /// Where in configuration (`versions.v1.resources.jobs.fields.due_on`).
        location: String,
        /// The column.
        column: String,
    },
}

impl Catalog {
    /// Completes every table resource's field limits (widths, precision and scale, integer
    /// ranges, NOT NULL, defaults) with what `columns(source, table)` reads from the database's
    /// catalog (`None`: the source's catalog cannot be read); what the configuration declares
    /// wins. Query resources keep their declared limits. Answers what the catalog lacks.
    pub fn complete_limits(
        &mut self,
        mut columns: impl FnMut(&str, &str) -> Option<Vec<limits::CatalogColumn>>,
    ) -> Vec<CatalogGap> {
        let mut gaps = Vec::new();
        for version in self.versions.values_mut() {
            for resource in version.resources.values_mut() {
                let Relation::Table(table) = &resource.relation else {
                    continue;
                };
                let Some(found) = columns(&resource.source, table) else {
                    continue;
                };
                let at = format!("versions.{}.resources.{}", resource.version, resource.name);
                if found.is_empty() {
                    gaps.push(CatalogGap::Table {
                        location: at,
                        table: table.clone(),
                    });
                    continue;
                }
                for field in &mut resource.fields {
                    match found
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(&field.column))
                    {
                        Some(column) => field.limits = field.limits.completed_by(column.limits),
                        None => gaps.push(CatalogGap::Column {
                            location: format!("{at}.fields.{}", field.name),
                            column: field.column.clone(),
                        }),
                    }
                }
            }
        }
        gaps
    }
}

impl Resource {
    /// Finds a field by API name.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Finds a field by API name among those `mask` leaves visible.
    pub fn visible_field(&self, name: &str, mask: &access::FieldMask) -> Option<usize> {
        self.field(name).filter(|&i| !mask.hides(i))
    }

    /// Names of the fields `mask` leaves visible, for error messages.
    pub fn field_names(&self, mask: &access::FieldMask) -> String {
        self.fields
            .iter()
            .enumerate()
            .filter(|(i, _)| !mask.hides(*i))
            .map(|(_, f)| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
