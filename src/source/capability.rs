//! The capability profile of a source: what its driver does right (declared in configuration,
//! else probed once with cheap statements, else assumed), what each SELECT needs pushed down,
//! and the source that serves within that profile: from in-memory snapshots where configured,
//! otherwise with an error naming what is missing, never a statement the driver gets wrong.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::call::{Call, CallOutcome};
use super::memory::{self, Table};
use super::select::{Condition, Relation, Select};
use super::snapshot::{SnapshotSettings, Snapshots};
use super::write::{Step, WriteOutcome};
use super::{
    ColumnType, Dialect, Param, Rows, Source, SourceError, SourceFuture, Statement, Value,
};
use crate::config::CapabilitiesConfig;

/// Something a driver may do wrong or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Many rows per fetch call.
    BlockFetch,
    /// `?` parameter markers.
    Parameters,
    /// `ORDER BY`.
    OrderBy,
    /// `IN (…)` lists.
    InList,
    /// The dialect's row limit (`LIMIT`, `TOP`).
    Limit,
    /// Comparisons of floating, decimal and currency values.
    FloatCompare,
    /// Comparisons of dates and timestamps.
    DateCompare,
    /// `IS NULL`.
    IsNull,
    /// Writes in transactions.
    Writes,
}

impl Capability {
    /// Every capability, in the order of the profile.
    pub const ALL: [Capability; 9] = [
        Capability::BlockFetch,
        Capability::Parameters,
        Capability::OrderBy,
        Capability::InList,
        Capability::Limit,
        Capability::FloatCompare,
        Capability::DateCompare,
        Capability::IsNull,
        Capability::Writes,
    ];

    /// Its key under `capabilities` in configuration.
    pub fn key(self) -> &'static str {
        match self {
            Capability::BlockFetch => "block_fetch",
            Capability::Parameters => "parameters",
            Capability::OrderBy => "order_by",
            Capability::InList => "in_list",
            Capability::Limit => "limit",
            Capability::FloatCompare => "float_compare",
            Capability::DateCompare => "date_compare",
            Capability::IsNull => "is_null",
            Capability::Writes => "writes",
        }
    }

    /// What it is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Capability::BlockFetch => "block fetches (a row array size)",
            Capability::Parameters => "`?` parameters",
            Capability::OrderBy => "ORDER BY",
            Capability::InList => "IN lists",
            Capability::Limit => "a row limit clause (LIMIT, TOP)",
            Capability::FloatCompare => "comparisons of floating, decimal and currency values",
            Capability::DateCompare => "comparisons of dates and timestamps",
            Capability::IsNull => "IS NULL",
            Capability::Writes => "writes in transactions",
        }
    }

    /// What of a request needs it, in the client's terms (no source, table or setting).
    pub fn requested(self) -> &'static str {
        match self {
            Capability::BlockFetch => "reading rows",
            Capability::Parameters => {
                "filtering by a value, looking a row up by its key, or following a cursor"
            }
            Capability::OrderBy => "listing rows in order (every page is in order)",
            Capability::InList => "`in` and `nin` filters",
            Capability::Limit => "pages of a bounded size",
            Capability::FloatCompare => {
                "comparing decimal or number values (a filter, or a cursor sorted by one)"
            }
            Capability::DateCompare => {
                "comparing dates and times (a filter, or a cursor sorted by one)"
            }
            Capability::IsNull => "`null` filters, or a cursor sorted by a field that may be null",
            Capability::Writes => "writes",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// How a capability came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Declared in configuration.
    Declared(bool),
    /// Found by a probe at start.
    Probed(bool),
    /// Neither: assumed present.
    Assumed,
}

/// What a source's driver does right: declared values win over probed ones; the rest are
/// assumed present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Profile {
    declared: [Option<bool>; 9],
    probed: [Option<bool>; 9],
}

impl Profile {
    /// The profile a configuration declares.
    pub fn declared(config: &CapabilitiesConfig) -> Self {
        let mut profile = Profile::default();
        for (capability, value) in [
            (Capability::BlockFetch, config.block_fetch),
            (Capability::Parameters, config.parameters),
            (Capability::OrderBy, config.order_by),
            (Capability::InList, config.in_list),
            (Capability::Limit, config.limit),
            (Capability::FloatCompare, config.float_compare),
            (Capability::DateCompare, config.date_compare),
            (Capability::IsNull, config.is_null),
            (Capability::Writes, config.writes),
        ] {
            profile.declared[capability.index()] = value;
        }
        profile
    }

    /// How `capability` is known.
    pub fn known(&self, capability: Capability) -> Known {
        let i = capability.index();
        match (self.declared[i], self.probed[i]) {
            (Some(v), _) => Known::Declared(v),
            (None, Some(v)) => Known::Probed(v),
            (None, None) => Known::Assumed,
        }
    }

    /// Whether the driver does it right (assumed when neither declared nor probed).
    pub fn has(&self, capability: Capability) -> bool {
        !matches!(
            self.known(capability),
            Known::Declared(false) | Known::Probed(false)
        )
    }

    /// Records a probe's finding (a declared value still wins).
    pub fn set_probed(&mut self, capability: Capability, value: bool) {
        self.probed[capability.index()] = Some(value);
    }

    /// Every capability it lacks.
    pub fn lacks(&self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| !self.has(*c))
            .collect()
    }

    /// What is missing for `needs`, said for people: the capability and how it is known.
    pub fn explain(&self, needs: &[Capability]) -> String {
        needs
            .iter()
            .map(|c| {
                let how = match self.known(*c) {
                    Known::Declared(_) => "declared",
                    Known::Probed(_) => "probed at start",
                    Known::Assumed => "assumed",
                };
                format!("{} (capabilities.{} = false, {how})", c.describe(), c.key())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What running `select` as SQL in `dialect` asks of the driver.
pub fn needs(select: &Select, dialect: Dialect) -> Vec<Capability> {
    let mut found: Vec<Capability> = Vec::new();
    let mut need = |c: Capability| {
        if !found.contains(&c) {
            found.push(c);
        }
    };
    if !select.order.is_empty() {
        need(Capability::OrderBy);
    }
    if matches!(
        dialect,
        Dialect::Sqlite | Dialect::Postgres | Dialect::MySql | Dialect::TSql
    ) {
        need(Capability::Limit);
    }
    if let Some(after) = &select.after {
        for (term, value) in select.order.iter().zip(after) {
            if *value != Value::Null {
                need(Capability::Parameters);
                compared(term.column_type, &mut need);
            }
            if term.nullable {
                need(Capability::IsNull);
            }
        }
    }
    fn compared(column_type: ColumnType, need: &mut dyn FnMut(Capability)) {
        match column_type {
            ColumnType::Float | ColumnType::Decimal | ColumnType::Money => {
                need(Capability::FloatCompare)
            }
            ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampOffset => {
                need(Capability::DateCompare)
            }
            _ => {}
        }
    }
    fn walk(condition: &Condition, need: &mut dyn FnMut(Capability)) {
        let params = |ps: &[Param], need: &mut dyn FnMut(Capability)| {
            need(Capability::Parameters);
            if let Some(p) = ps.first() {
                compared(p.column_type, need);
            }
        };
        match condition {
            Condition::Compare { param, .. } => params(std::slice::from_ref(param), need),
            Condition::In { params: ps, .. } | Condition::NotIn { params: ps, .. } => {
                need(Capability::InList);
                params(ps, need);
            }
            Condition::Prefix { .. } => need(Capability::Parameters),
            Condition::Near { .. } => {
                need(Capability::Parameters);
                need(Capability::FloatCompare);
            }
            Condition::IsNull { .. } => need(Capability::IsNull),
            Condition::LastInsertId { .. } => {}
            Condition::InParent { filter, .. } => {
                for c in filter {
                    walk(c, need);
                }
            }
            Condition::Or(items) | Condition::And(items) => {
                for c in items {
                    walk(c, need);
                }
            }
        }
    }
    for condition in &select.filter {
        walk(condition, &mut need);
    }
    found
}

/// Where capabilities are probed: a table a resource of the source reads, and one of its
/// columns (a key column, so it is rarely NULL) with the type it is read as.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// Table name as in configuration.
    pub table: String,
    /// Column name.
    pub column: String,
    /// How the column is read.
    pub column_type: ColumnType,
}

/// A source served within its driver's capability profile.
pub struct ProfiledSource {
    inner: Arc<dyn Source>,
    profile: RwLock<Profile>,
    snapshots: Option<Snapshots>,
    probe: Option<ProbeTarget>,
    probed: tokio::sync::OnceCell<()>,
}

impl ProfiledSource {
    /// Wraps `inner` with its declared profile, its snapshot bounds (none: every SELECT is
    /// pushed down) and, when capabilities are to be probed, where.
    pub fn new(
        inner: Arc<dyn Source>,
        declared: Profile,
        snapshots: Option<SnapshotSettings>,
        probe: Option<ProbeTarget>,
    ) -> Self {
        Self {
            inner,
            profile: RwLock::new(declared),
            snapshots: snapshots.map(Snapshots::new),
            probe,
            probed: tokio::sync::OnceCell::new(),
        }
    }

    /// The profile as now known (after [`Self::probe`], with its findings).
    pub fn profile(&self) -> Profile {
        self.profile.read().map(|p| *p).unwrap_or_default()
    }

    /// Whether tables are served from in-memory snapshots.
    pub fn serves_snapshots(&self) -> bool {
        self.snapshots.is_some()
    }

    /// Probes the capabilities the configuration does not declare, once; later calls wait for
    /// the first. Without a probe target this does nothing.
    pub async fn probe(&self) {
        self.probed
            .get_or_init(|| async {
                let Some(target) = &self.probe else {
                    return;
                };
                let declared = self.profile();
                let found = probe(&*self.inner, target, &declared).await;
                if let Ok(mut profile) = self.profile.write() {
                    for (capability, value) in found {
                        profile.set_probed(capability, value);
                    }
                }
            })
            .await;
    }

    fn unsupported(&self, missing: &[Capability], needs: String, fix: String) -> SourceError {
        SourceError::Unsupported {
            source_name: self.inner.name().to_string(),
            request: missing
                .iter()
                .map(|c| c.requested())
                .collect::<Vec<_>>()
                .join("; "),
            needs,
            fix,
        }
    }

    /// Serves `select` from the snapshots of the tables it reads.
    async fn read_snapshots(
        &self,
        snapshots: &Snapshots,
        select: Select,
    ) -> Result<Rows, SourceError> {
        let mut tables: HashMap<String, Arc<Table>> = HashMap::new();
        for (table, columns) in memory::needed_columns(&select) {
            let taken = snapshots.table(&*self.inner, &table, &columns).await?;
            tables.insert(table, taken);
        }
        memory::evaluate(&select, &tables).map_err(|missing| SourceError::Query {
            source_name: self.inner.name().to_string(),
            detail: missing.to_string(),
        })
    }
}

impl Source for ProfiledSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn query(&self, statement: Statement) -> SourceFuture<'_, Rows> {
        self.inner.query(statement)
    }

    fn write(&self, steps: Vec<Step>) -> SourceFuture<'_, WriteOutcome> {
        Box::pin(async move {
            if !self.profile().has(Capability::Writes) {
                return Err(self.unsupported(
                    &[Capability::Writes],
                    self.profile().explain(&[Capability::Writes]),
                    "this source is read-only: remove `writes` from its resources".into(),
                ));
            }
            let outcome = self.inner.write(steps).await;
            if let Some(snapshots) = &self.snapshots {
                // The write may have changed any table read whole.
                snapshots.clear();
            }
            outcome
        })
    }

    fn call(&self, call: Call) -> SourceFuture<'_, CallOutcome> {
        self.inner.call(call)
    }

    fn ping(&self) -> SourceFuture<'_, ()> {
        self.inner.ping()
    }

    fn breaker_state(&self) -> super::BreakerState {
        self.inner.breaker_state()
    }

    fn count(&self, select: Select, estimate: bool) -> SourceFuture<'_, super::RowCount> {
        Box::pin(async move {
            self.probe().await;
            if let Some(snapshots) = self.snapshots.as_ref().filter(|_| reads_tables(&select)) {
                let every = Select {
                    columns: Vec::new(),
                    order: Vec::new(),
                    after: None,
                    limit: usize::MAX,
                    ..select
                };
                let rows = self.read_snapshots(snapshots, every).await?;
                return Ok(super::RowCount {
                    rows: rows.len() as u64,
                    estimated: false,
                });
            }
            self.inner.count(select, estimate).await
        })
    }

    fn aggregate(&self, aggregate: super::select::Aggregate) -> SourceFuture<'_, Rows> {
        Box::pin(async move {
            self.probe().await;
            let every = Select {
                relation: aggregate.relation.clone(),
                columns: memory::aggregate_columns(&aggregate),
                filter: aggregate.filter.clone(),
                order: Vec::new(),
                after: None,
                limit: usize::MAX,
                per_group: None,
            };
            if let Some(snapshots) = self.snapshots.as_ref().filter(|_| reads_tables(&every)) {
                let rows = self.read_snapshots(snapshots, every).await?;
                return Ok(memory::aggregate(&aggregate, rows));
            }
            self.inner.aggregate(aggregate).await
        })
    }

    fn select(&self, select: Select) -> SourceFuture<'_, Rows> {
        Box::pin(async move {
            self.probe().await;
            if let Some(snapshots) = self.snapshots.as_ref().filter(|_| reads_tables(&select)) {
                return self.read_snapshots(snapshots, select).await;
            }
            let profile = self.profile();
            let missing: Vec<Capability> = needs(&select, self.dialect())
                .into_iter()
                .filter(|c| !profile.has(*c))
                .collect();
            if !missing.is_empty() {
                let fix = match &select.relation {
                    Relation::Table(_) => format!(
                        "serve its tables from memory with [sources.{}] snapshot = {{ max_rows = 50000, ttl = \"5m\" }}",
                        self.inner.name()
                    ),
                    Relation::Query(_) => "a `query` resource is never read whole: serve the \
                                           table it reads as a table resource with a snapshot"
                        .into(),
                };
                let needs = match &select.relation {
                    Relation::Table(table) => {
                        format!("{} to read `{table}`", profile.explain(&missing))
                    }
                    Relation::Query(_) => {
                        format!("{} to run the resource's query", profile.explain(&missing))
                    }
                };
                return Err(self.unsupported(&missing, needs, fix));
            }
            self.inner.select(select).await
        })
    }
}

/// Whether `select` reads tables only (its own relation and every parent its conditions look
/// into): a configured query is never read whole.
fn reads_tables(select: &Select) -> bool {
    fn tables_only(condition: &Condition) -> bool {
        match condition {
            Condition::InParent {
                relation, filter, ..
            } => matches!(relation, Relation::Table(_)) && filter.iter().all(tables_only),
            Condition::Or(items) | Condition::And(items) => items.iter().all(tables_only),
            _ => true,
        }
    }
    matches!(select.relation, Relation::Table(_)) && select.filter.iter().all(tables_only)
}

/// Runs the cheap statements that find what `declared` leaves open, logging each finding.
async fn probe(
    source: &dyn Source,
    target: &ProbeTarget,
    declared: &Profile,
) -> Vec<(Capability, bool)> {
    let dialect = source.dialect();
    let column = dialect.quote(&target.column);
    let table = dialect.quote(&target.table);
    let statement = |sql: String, params: Vec<Param>| Statement {
        sql,
        params,
        columns: vec![target.column_type],
        max_rows: 1,
    };
    let base = format!("SELECT {column} FROM {table}");
    let first = match source.query(statement(base.clone(), Vec::new())).await {
        Ok(rows) => rows.into_iter().next().and_then(|r| r.into_iter().next()),
        Err(e) => {
            tracing::warn!(source = source.name(), table = %target.table, error = %e, "cannot probe the driver's capabilities: the simplest read failed; undeclared capabilities are assumed");
            return Vec::new();
        }
    };
    let open = |c: Capability| matches!(declared.known(c), Known::Assumed);
    let mut found = Vec::new();
    let mut record = |capability: Capability, works: bool, how: &str| {
        if works {
            tracing::info!(
                source = source.name(),
                capability = capability.key(),
                "probed: the driver does it"
            );
        } else {
            tracing::warn!(
                source = source.name(),
                capability = capability.key(),
                finding = how,
                "probed: the driver cannot do it; declare capabilities.{} to skip the probe",
                capability.key()
            );
        }
        found.push((capability, works));
    };
    // A probe works when the driver takes the statement and still finds the row read above.
    let has_rows = first.is_some();
    let answers = |result: Result<Rows, SourceError>| match result {
        Ok(rows) if !has_rows || !rows.is_empty() => (true, "ok".to_string()),
        Ok(_) => (false, "the statement found no row".to_string()),
        Err(e) => (false, e.to_string()),
    };
    if open(Capability::Limit) && dialect != Dialect::Generic {
        let limited = dialect.select(&Select {
            relation: Relation::Table(target.table.clone()),
            columns: vec![(target.column.clone(), target.column_type)],
            filter: Vec::new(),
            order: Vec::new(),
            after: None,
            limit: 1,
            per_group: None,
        });
        let (works, how) = answers(source.query(limited).await);
        record(Capability::Limit, works, &how);
    }
    if open(Capability::OrderBy) {
        let sql = format!("{base} ORDER BY {column}");
        let (works, how) = answers(source.query(statement(sql, Vec::new())).await);
        record(Capability::OrderBy, works, &how);
    }
    if open(Capability::IsNull) {
        let sql = format!("{base} WHERE {column} IS NULL OR {column} IS NOT NULL");
        let (works, how) = answers(source.query(statement(sql, Vec::new())).await);
        record(Capability::IsNull, works, &how);
    }
    let Some(value) = first.filter(|v| *v != Value::Null) else {
        return found;
    };
    let param = Param {
        value,
        column_type: target.column_type,
    };
    let mut parameters = !matches!(
        declared.known(Capability::Parameters),
        Known::Declared(false)
    );
    if open(Capability::Parameters) {
        let sql = format!("{base} WHERE {column} = ?");
        let (works, how) = answers(source.query(statement(sql, vec![param.clone()])).await);
        record(Capability::Parameters, works, &how);
        parameters = works;
    }
    if open(Capability::InList) && parameters {
        let sql = format!("{base} WHERE {column} IN (?, ?)");
        let (works, how) = answers(
            source
                .query(statement(sql, vec![param.clone(), param]))
                .await,
        );
        record(Capability::InList, works, &how);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::select::{CmpOp, OrderTerm};

    fn select(filter: Vec<Condition>, after: Option<Vec<Value>>) -> Select {
        Select {
            relation: Relation::Table("Orders".into()),
            columns: vec![("OrderID".into(), ColumnType::Integer)],
            filter,
            order: vec![
                OrderTerm {
                    column: "Freight".into(),
                    column_type: ColumnType::Decimal,
                    descending: false,
                    nullable: true,
                },
                OrderTerm {
                    column: "OrderID".into(),
                    column_type: ColumnType::Integer,
                    descending: false,
                    nullable: false,
                },
            ],
            after,
            limit: 51,
            per_group: None,
        }
    }

    #[test]
    fn a_select_needs_what_its_sql_would_ask_of_the_driver() {
        assert_eq!(
            needs(&select(vec![], None), Dialect::Generic),
            [Capability::OrderBy]
        );
        assert_eq!(
            needs(&select(vec![], None), Dialect::Sqlite),
            [Capability::OrderBy, Capability::Limit]
        );
        let in_list = Condition::In {
            column: "ShipVia".into(),
            params: vec![Param {
                value: Value::Int(1),
                column_type: ColumnType::Integer,
            }],
        };
        let after = Some(vec![Value::Decimal("1.5".into()), Value::Int(3)]);
        assert_eq!(
            needs(&select(vec![in_list], after), Dialect::Generic),
            [
                Capability::OrderBy,
                Capability::Parameters,
                Capability::FloatCompare,
                Capability::IsNull,
                Capability::InList
            ]
        );
        let date = Condition::Compare {
            column: "OrderDate".into(),
            op: CmpOp::Gte,
            param: Param {
                value: Value::Timestamp("1995-01-01 00:00:00".into()),
                column_type: ColumnType::Timestamp,
            },
        };
        assert!(
            needs(&select(vec![date], None), Dialect::Generic).contains(&Capability::DateCompare)
        );
    }

    #[test]
    fn only_selects_over_tables_are_read_from_snapshots() {
        assert!(reads_tables(&select(vec![], None)));
        let under = |relation| Condition::InParent {
            column: "CustomerID".into(),
            relation,
            key: "CustomerID".into(),
            filter: vec![Condition::IsNull {
                column: "Region".into(),
                negated: true,
            }],
        };
        assert!(reads_tables(&select(
            vec![under(Relation::Table("Customers".into()))],
            None
        )));
        assert!(!reads_tables(&select(
            vec![Condition::Or(vec![under(Relation::Query(
                "SELECT * FROM Customers".into()
            ))])],
            None
        )));
        let mut query = select(vec![], None);
        query.relation = Relation::Query("SELECT * FROM Orders".into());
        assert!(!reads_tables(&query));
    }

    #[test]
    fn declared_values_win_over_probed_ones_and_the_rest_is_assumed() {
        let mut profile = Profile::declared(&CapabilitiesConfig {
            order_by: Some(false),
            parameters: Some(true),
            ..CapabilitiesConfig::default()
        });
        profile.set_probed(Capability::Parameters, false);
        profile.set_probed(Capability::InList, false);
        assert!(profile.has(Capability::Parameters));
        assert!(!profile.has(Capability::OrderBy));
        assert!(!profile.has(Capability::InList));
        assert!(profile.has(Capability::Writes));
        assert_eq!(profile.lacks(), [Capability::OrderBy, Capability::InList]);
        assert_eq!(
            profile.explain(&[Capability::OrderBy, Capability::InList]),
            "ORDER BY (capabilities.order_by = false, declared), IN lists \
             (capabilities.in_list = false, probed at start)"
        );
    }
}
