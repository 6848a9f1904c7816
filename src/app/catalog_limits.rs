//! Column limits from the sources' own catalogs, completing what the file declares.

use std::collections::HashMap;

use crate::catalog::Catalog;
use crate::config::{Config, SourceKind};

/// Reads each ODBC table's column widths, precisions, nullability and defaults from its
/// catalog (one connection per source, within its `login_timeout`), so writes and documents
/// know what the columns hold, and bounds text by what the source reads whole. A source that
/// cannot be reached now keeps the declared limits only (logged); declaring `column_type` and
/// `nullable` makes the document independent of the database being up at start.
pub(super) fn complete(catalog: &mut Catalog, config: &Config) {
    use crate::catalog::limits::{CatalogColumn, Limits};
    use crate::source::odbc::catalog::ColumnReader;
    let mut readers: HashMap<String, Option<ColumnReader>> = HashMap::new();
    let read = |source: &str, table: &str| -> Option<Vec<CatalogColumn>> {
        let settings = config.sources.get(source)?;
        if settings.kind != SourceKind::Odbc {
            return None;
        }
        let dialect: crate::source::Dialect = settings.dialect_name().into();
        let reader = readers.entry(source.to_string()).or_insert_with(|| {
            ColumnReader::open(&settings.connection_string, dialect, settings.login_timeout)
                .map_err(|e| tracing::warn!(source, error = %e, "cannot read the catalog; only declared column limits apply"))
                .ok()
        });
        match reader.as_ref()?.columns(table) {
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
                tracing::warn!(source, table, error = %e, "cannot read the table's catalog; only declared column limits apply");
                None
            }
        }
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
