//! Column limits from the sources' own catalogs, completing what the file declares.

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::{Config, SourceKind};
use crate::source::{BreakerState, Source};

/// What a reload already knows of the sources' catalogs: the running catalog (its limits as
/// read when it was built), the sources serving it and the configuration they were made from.
pub(super) struct Running {
    pub catalog: Arc<Catalog>,
    pub sources: HashMap<String, Arc<dyn Source>>,
    pub config: Config,
}

impl Running {
    /// Whether `source` serves on with the same settings in `config`.
    fn kept(&self, source: &str, config: &Config) -> bool {
        self.sources.contains_key(source)
            && self.config.sources.get(source) == config.sources.get(source)
    }

    /// Whether the running `source` (same settings) has its breaker open: its database is
    /// not tried again before the cool-down ends.
    fn breaker_open(&self, source: &str, config: &Config) -> bool {
        self.kept(source, config)
            && self
                .sources
                .get(source)
                .is_some_and(|s| s.breaker_state() == BreakerState::Open)
    }

    /// The columns of `table` as the database's catalog gave them to the running
    /// configuration, when `source` serves on with the same settings.
    fn columns(
        &self,
        source: &str,
        table: &str,
        config: &Config,
    ) -> Option<Vec<crate::catalog::limits::CatalogColumn>> {
        if !self.kept(source, config) {
            return None;
        }
        self.catalog
            .read_columns
            .get(&(source.to_string(), table.to_string()))
            .cloned()
    }
}

/// Reads each ODBC table's column widths, precisions, nullability and defaults from its
/// catalog (one connection per source, within its `login_timeout`), so writes and documents
/// know what the columns hold, and bounds text by what the source reads whole. A source that
/// cannot be reached now keeps the declared limits only (logged); declaring `column_type` and
/// `nullable` makes the document independent of the database being up at start. At a reload
/// (`running`), a source that serves on unchanged keeps the limits read before when its
/// catalog cannot be read now, and is not tried at all while its breaker is open.
pub(super) fn complete(catalog: &mut Catalog, config: &Config, running: Option<&Running>) {
    use crate::catalog::limits::{CatalogColumn, Limits};
    use crate::source::odbc::catalog::ColumnReader;
    let mut readers: HashMap<String, Option<ColumnReader>> = HashMap::new();
    let mut read_now = |source: &str, table: &str| -> Option<Vec<CatalogColumn>> {
        let settings = config.sources.get(source)?;
        if settings.kind != SourceKind::Odbc {
            return None;
        }
        let known = || running.and_then(|r| r.columns(source, table, config));
        if running.is_some_and(|r| r.breaker_open(source, config)) {
            return known();
        }
        let dialect: crate::source::Dialect = settings.dialect_name().into();
        let reader = readers.entry(source.to_string()).or_insert_with(|| {
            ColumnReader::open(&settings.connection_string, dialect, settings.login_timeout)
                .map_err(|e| tracing::warn!(source, error = %e, "cannot read the catalog; only declared column limits apply, or those read before"))
                .ok()
        });
        let Some(reader) = reader.as_ref() else {
            return known();
        };
        match reader.columns(table) {
            Ok(columns) => Some(
                columns
                    .iter()
                    .map(|c| CatalogColumn {
                        name: c.name.clone(),
                        limits: Limits::from_catalog(c, dialect),
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(source, table, error = %e, "cannot read the table's catalog; only declared column limits apply, or those read before");
                known()
            }
        }
    };
    // What the databases said (or said before, when down), kept with the catalog for a
    // later reload.
    let mut read_columns = HashMap::new();
    let read = |source: &str, table: &str| {
        let found = read_now(source, table);
        if let Some(columns) = &found {
            read_columns.insert((source.to_string(), table.to_string()), columns.clone());
        }
        found
    };
    for gap in catalog.complete_limits(read) {
        match gap {
            crate::catalog::CatalogGap::Table { location, table } => {
                tracing::warn!(at = %location, %table, "the catalog lists no such table")
            }
            crate::catalog::CatalogGap::Column { location, column } => {
                tracing::warn!(at = %location, %column, "the table's catalog does not list this column")
            }
        }
    }
    catalog.read_columns = read_columns;
    for resource in catalog
        .versions
        .values_mut()
        .flat_map(|v| v.resources.values_mut())
    {
        let Some(settings) = config.sources.get(&resource.source) else {
            continue;
        };
        if settings.kind == SourceKind::Odbc {
            let bytes = u32::try_from(settings.max_text_bytes).unwrap_or(u32::MAX);
            for field in &mut resource.fields {
                field.limits.max_bytes = Some(bytes);
            }
        }
    }
}
