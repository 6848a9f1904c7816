//! A change feed: one watched table, read once, shown through every resource over it.

use std::sync::Arc;
use std::time::Duration;

use super::{ChangeStrategy, ChangeTracking, HighWaterMark, Rowversion, SnapshotDiff};
use crate::catalog::{Catalog, Resource};
use crate::config::{
    ChangesConfig, Config, DialectName, InitialPosition, Problem, StampClock, StrategyName,
};
use crate::source::select::Relation;
use crate::source::{ColumnType, Dialect};

/// One watched table.
#[derive(Debug, Clone)]
pub struct Feed {
    /// `source.table`: the name cursors and events are stored under.
    pub name: String,
    /// Source name.
    pub source: String,
    /// The source's SQL dialect: how its engine compares text when row policies are applied
    /// to an event's row.
    pub dialect: Dialect,
    /// Table (possibly schema-qualified).
    pub table: String,
    /// Columns read: the key columns first, then every column a resource over the table shows.
    pub columns: Vec<(String, ColumnType)>,
    /// How many of `columns` form the key.
    pub key_len: usize,
    /// Index in `columns` of the monotonic or `rowversion` column.
    pub column: Option<usize>,
    /// How changes are noticed.
    pub strategy: Arc<dyn ChangeStrategy>,
    /// The strategy's name in configuration.
    pub strategy_name: StrategyName,
    /// Time between polls.
    pub poll_interval: Duration,
    /// How far back `high_water_mark` re-reads.
    pub lag: Duration,
    /// Rows per read.
    pub page_size: usize,
    /// Where the feed starts the first time.
    pub initial: InitialPosition,
    /// `high_water_mark`: time from the end of one reconciliation pass to the start of the
    /// next; `None`: no reconciliation.
    pub reconcile_interval: Option<Duration>,
    /// The resources (any version) that show this table's rows.
    pub views: Vec<FeedView>,
    /// `high_water_mark` over a timestamp: the clock the column's stamps follow.
    pub clock: StampClock,
    /// `high_water_mark` over a timestamp: how far ahead of the database's clock a stamp may
    /// be before it is counted as stamped in the future.
    pub clock_skew: Duration,
    /// Runtime: when the last completed poll began reading (ms since the epoch; 0: never). A
    /// completed poll has seen everything committed before it began.
    pub polled_ms: Arc<std::sync::atomic::AtomicI64>,
    /// Runtime: when the feed's poll loop started (ms since the epoch; 0: not polling).
    pub started_ms: Arc<std::sync::atomic::AtomicI64>,
    /// Runtime: the last failed poll, if any failed since the process started.
    pub last_failure: Arc<std::sync::Mutex<Option<PollFailure>>>,
}

/// When a poll failed and what kind of failure it was (no driver message: those are for the
/// log, and may name hosts or users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFailure {
    /// When it failed (ms since the epoch).
    pub at_ms: i64,
    /// `unavailable`, `timeout`, `busy`, `query`, `strategy`, `state` or `lease`.
    pub kind: &'static str,
}

/// A resource over a feed's table, and where each of its fields is among the feed's columns.
#[derive(Debug, Clone)]
pub struct FeedView {
    /// Version name.
    pub version: String,
    /// Resource name (the event type's prefix).
    pub resource: String,
    /// Per field of the resource: its index in the feed's columns.
    pub positions: Vec<usize>,
}

impl Feed {
    /// The view of `version` named `resource`, if it shows this feed.
    pub fn view(&self, version: &str, resource: &str) -> Option<&FeedView> {
        self.views
            .iter()
            .find(|v| v.version == version && v.resource == resource)
    }

    /// Whether the feed announces deleted rows: its strategy sees them, or reconciliation
    /// passes find them.
    pub fn sees_deletes(&self) -> bool {
        self.strategy.sees_deletes() || self.reconcile_interval.is_some()
    }

    /// How far behind the database's present the feed is, in ms: since the last completed
    /// poll began, or, before the first one completes, since polling started; `None` when
    /// the feed is not polled.
    pub fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        use std::sync::atomic::Ordering;
        let since = match self.polled_ms.load(Ordering::Relaxed) {
            0 => self.started_ms.load(Ordering::Relaxed),
            polled => polled,
        };
        (since > 0).then(|| (now_ms - since).max(0))
    }

    /// Whether the feed records each row's values besides its hash: only a feed that
    /// announces deletes needs them (a `deleted` event carries the last known row).
    pub fn keeps_rows(&self) -> bool {
        self.sees_deletes()
    }

    /// Remembers a failed poll.
    pub fn failed(&self, kind: &'static str, at_ms: i64) {
        let mut last = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = Some(PollFailure { at_ms, kind });
    }

    /// The last failed poll, if any.
    pub fn last_failure(&self) -> Option<PollFailure> {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Index of a column among the feed's columns.
    pub fn position(&self, column: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(column))
    }
}

fn over_table<'a>(resource: &'a Resource, source: &str) -> Option<&'a str> {
    match &resource.relation {
        Relation::Table(t) if resource.source == source => Some(t),
        _ => None,
    }
}

/// Compiles the feeds that resources declare; problems carry their configuration location.
pub fn compile_feeds(config: &Config, catalog: &Catalog) -> Result<Vec<Feed>, Vec<Problem>> {
    let mut feeds: Vec<Feed> = Vec::new();
    let mut problems = Vec::new();
    for (version, vc) in &config.versions {
        for (name, rc) in &vc.resources {
            let (Some(changes), Some(resource)) = (&rc.changes, catalog.resource(version, name))
            else {
                continue;
            };
            let at = format!("versions.{version}.resources.{name}.changes");
            let dialect = config.sources.get(&rc.source).map(|s| s.dialect_name());
            match compile_one(changes, resource, dialect, catalog, &at) {
                Ok(feed) => match feeds
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(&feed.name))
                {
                    Some(_) => problems.push(Problem {
                        location: at,
                        message: format!(
                            "the table `{}` is already watched by another resource; resources \
                             of other versions over it share that feed",
                            feed.table
                        ),
                    }),
                    None => feeds.push(feed),
                },
                Err(found) => problems.extend(found),
            }
        }
    }
    if problems.is_empty() {
        Ok(feeds)
    } else {
        Err(problems)
    }
}

fn compile_one(
    changes: &ChangesConfig,
    resource: &Resource,
    dialect: Option<DialectName>,
    catalog: &Catalog,
    at: &str,
) -> Result<Feed, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            location: if key.is_empty() {
                at.to_string()
            } else {
                format!("{at}.{key}")
            },
            message,
        })
    };
    let Relation::Table(table) = &resource.relation else {
        problem(
            "",
            "changes are watched on tables and views, not on `query` resources".into(),
        );
        return Err(problems);
    };
    let (poll_interval, lag) = (changes.poll_interval, changes.lag);
    if changes.page_size == 0 {
        problem("page_size", "must be at least 1".into());
    }
    let tsql_only = matches!(
        changes.strategy,
        StrategyName::ChangeTracking | StrategyName::Rowversion
    );
    if tsql_only && dialect != Some(DialectName::Tsql) {
        problem(
            "strategy",
            "`change_tracking` and `rowversion` need a SQL Server source (dialect `tsql`)".into(),
        );
    }
    let needs_column = matches!(
        changes.strategy,
        StrategyName::HighWaterMark | StrategyName::Rowversion
    );
    if needs_column && changes.column.is_none() {
        problem("column", "this strategy needs the monotonic column".into());
    }

    // Key columns first, then every column some resource over the table shows.
    let key: Vec<&crate::catalog::Field> =
        resource.key.iter().map(|&i| &resource.fields[i]).collect();
    let key_columns: Vec<String> = key.iter().map(|f| f.column.to_ascii_uppercase()).collect();
    let mut columns: Vec<(String, ColumnType)> = key
        .iter()
        .map(|f| (f.column.clone(), f.column_type))
        .collect();
    let mut views = Vec::new();
    for version in catalog.versions.values() {
        for other in version.resources.values() {
            let same_table =
                over_table(other, &resource.source).is_some_and(|t| t.eq_ignore_ascii_case(table));
            let other_key: Vec<String> = other
                .key
                .iter()
                .map(|&i| other.fields[i].column.to_ascii_uppercase())
                .collect();
            if !same_table || other_key != key_columns {
                continue;
            }
            let mut positions = Vec::new();
            for field in &other.fields {
                // Per (column, type): a `date` and a `datetime` field over one column each
                // get their own reading, as on a `GET`.
                let found = columns.iter().position(|(c, t)| {
                    c.eq_ignore_ascii_case(&field.column) && *t == field.column_type
                });
                positions.push(found.unwrap_or_else(|| {
                    columns.push((field.column.clone(), field.column_type));
                    columns.len() - 1
                }));
            }
            views.push(FeedView {
                version: version.name.clone(),
                resource: other.name.clone(),
                positions,
            });
        }
    }
    let column = changes.column.as_ref().map(|name| {
        let declared = changes.column_type.as_deref().map(|text| {
            ColumnType::parse(text).unwrap_or_else(|| {
                problem("column_type", format!("`{text}` is not a column type"));
                ColumnType::Timestamp
            })
        });
        match columns
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(name))
        {
            Some(i) => i,
            None => {
                let default = match changes.strategy {
                    StrategyName::Rowversion => ColumnType::Integer,
                    _ => ColumnType::Timestamp,
                };
                columns.push((name.clone(), declared.unwrap_or(default)));
                columns.len() - 1
            }
        }
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    let strategy: Arc<dyn ChangeStrategy> = match changes.strategy {
        StrategyName::HighWaterMark => Arc::new(HighWaterMark),
        StrategyName::SnapshotDiff => Arc::new(SnapshotDiff),
        StrategyName::ChangeTracking => Arc::new(ChangeTracking),
        StrategyName::Rowversion => Arc::new(Rowversion),
    };
    Ok(Feed {
        name: format!("{}.{table}", resource.source),
        source: resource.source.clone(),
        dialect: dialect.map_or(Dialect::Generic, Dialect::from),
        table: table.clone(),
        key_len: key.len(),
        columns,
        column,
        strategy,
        strategy_name: changes.strategy,
        poll_interval,
        lag,
        page_size: changes.page_size,
        initial: changes.initial,
        reconcile_interval: changes.reconcile_interval,
        views,
        clock: changes.clock,
        clock_skew: changes.clock_skew,
        polled_ms: Arc::default(),
        started_ms: Arc::default(),
        last_failure: Arc::default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A feed over `JOBHDR (JOB_NO char(8) key, STATUS char(1), LAST_UPD timestamp)`.
    pub(crate) fn jobs_feed(strategy: &str, page_size: usize) -> Feed {
        let (strategy, strategy_name): (Arc<dyn ChangeStrategy>, _) = match strategy {
            "high_water_mark" => (Arc::new(HighWaterMark), StrategyName::HighWaterMark),
            "snapshot_diff" => (Arc::new(SnapshotDiff), StrategyName::SnapshotDiff),
            "change_tracking" => (Arc::new(ChangeTracking), StrategyName::ChangeTracking),
            _ => (Arc::new(Rowversion), StrategyName::Rowversion),
        };
        Feed {
            name: "shop.JOBHDR".into(),
            source: "shop".into(),
            dialect: Dialect::Sqlite,
            table: "JOBHDR".into(),
            columns: vec![
                ("JOB_NO".into(), ColumnType::Char(Some(8))),
                ("STATUS".into(), ColumnType::Char(Some(1))),
                ("LAST_UPD".into(), ColumnType::Timestamp),
            ],
            key_len: 1,
            column: Some(2),
            strategy,
            strategy_name,
            poll_interval: Duration::from_secs(1),
            lag: Duration::from_secs(30),
            page_size,
            initial: InitialPosition::Now,
            reconcile_interval: None,
            views: Vec::new(),
            clock: StampClock::Local,
            clock_skew: Duration::from_secs(300),
            polled_ms: Arc::default(),
            started_ms: Arc::default(),
            last_failure: Arc::default(),
        }
    }

    fn compile_text(changes: &str, extra: &str) -> Result<Vec<Feed>, Vec<Problem>> {
        let text = format!(
            "{}[sources.shop]\nkind = \"odbc\"\ndialect = \"sqlite\"\nconnection_string = \"x\"\n\
             [versions.v1.resources.jobs]\nsource = \"shop\"\ntable = \"JOBHDR\"\nkey = [\"id\"]\n\
             read_scope = \"jobs:read\"\n{changes}\n\
             [versions.v1.resources.jobs.fields]\n\
             id = {{ column = \"JOB_NO\", type = \"string\", column_type = \"char(8)\" }}\n\
             status = {{ column = \"STATUS\", type = \"string\" }}\n\
             [versions.v2.resources.work]\nsource = \"shop\"\ntable = \"jobhdr\"\nkey = [\"number\"]\n\
             read_scope = \"jobs:read\"\n{extra}\n\
             [versions.v2.resources.work.fields]\n\
             number = {{ column = \"JOB_NO\", type = \"string\", column_type = \"char(8)\" }}\n\
             updated = {{ column = \"LAST_UPD\", type = \"datetime\" }}\n",
            crate::config::TEST_AUTH
        );
        // A refused value (`poll_interval = "often"`) is a problem of reading the file.
        let config = crate::config::parse("t.toml", &text, &|_| None).map_err(|e| e.problems)?;
        let catalog = crate::catalog::compile(&config).unwrap();
        compile_feeds(&config, &catalog)
    }

    #[test]
    fn one_feed_per_table_serves_every_version_with_the_union_of_columns() {
        let feeds = compile_text(
            "changes = { strategy = \"high_water_mark\", column = \"LAST_UPD\", poll_interval = \"1s\" }",
            "",
        )
        .unwrap();
        assert_eq!(feeds.len(), 1);
        let feed = &feeds[0];
        assert_eq!(feed.name, "shop.JOBHDR");
        assert_eq!(feed.dialect, Dialect::Sqlite);
        let columns: Vec<&str> = feed.columns.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["JOB_NO", "STATUS", "LAST_UPD"]);
        assert_eq!((feed.key_len, feed.column), (1, Some(2)));
        assert_eq!(feed.views.len(), 2);
        assert_eq!(feed.view("v2", "work").unwrap().positions, vec![0, 2]);
        assert_eq!(feed.poll_interval, Duration::from_secs(1));
    }

    #[test]
    fn fields_reading_one_column_as_two_types_each_get_their_own_reading() {
        let text = format!(
            "{}[sources.shop]\nkind = \"odbc\"\ndialect = \"sqlite\"\nconnection_string = \"x\"\n\
             [versions.v1.resources.jobs]\nsource = \"shop\"\ntable = \"JOBHDR\"\nkey = [\"id\"]\n\
             read_scope = \"jobs:read\"\n\
             changes = {{ strategy = \"snapshot_diff\" }}\n\
             [versions.v1.resources.jobs.fields]\n\
             id = {{ column = \"JOB_NO\", type = \"string\" }}\n\
             updated_on = {{ column = \"LAST_UPD\", type = \"date\" }}\n\
             updated_at = {{ column = \"LAST_UPD\", type = \"datetime\" }}\n\
             updated = {{ column = \"last_upd\", type = \"datetime\" }}\n",
            crate::config::TEST_AUTH
        );
        let config = crate::config::parse("t.toml", &text, &|_| None).unwrap();
        let catalog = crate::catalog::compile(&config).unwrap();
        let feeds = compile_feeds(&config, &catalog).unwrap();
        let feed = &feeds[0];
        assert_eq!(
            feed.columns[1..],
            [
                ("LAST_UPD".to_string(), ColumnType::Date),
                ("LAST_UPD".to_string(), ColumnType::Timestamp)
            ]
        );
        assert_eq!(feed.view("v1", "jobs").unwrap().positions, vec![0, 1, 2, 2]);
    }

    #[test]
    fn a_feed_is_behind_since_its_last_completed_poll_began_or_since_polling_started() {
        use std::sync::atomic::Ordering;
        let feed = jobs_feed("high_water_mark", 2);
        assert_eq!(feed.lag_ms(10_000), None, "not polled at all");
        feed.started_ms.store(1_000, Ordering::Relaxed);
        assert_eq!(feed.lag_ms(10_000), Some(9_000), "no poll completed yet");
        feed.polled_ms.store(8_000, Ordering::Relaxed);
        assert_eq!(feed.lag_ms(10_000), Some(2_000));
        assert_eq!(feed.lag_ms(7_000), Some(0));
    }

    #[test]
    fn feed_problems_name_their_location() {
        let problems =
            compile_text("changes = { strategy = \"high_water_mark\" }", "").unwrap_err();
        assert_eq!(
            problems[0].location,
            "versions.v1.resources.jobs.changes.column"
        );
        let problems = compile_text(
            "changes = { strategy = \"rowversion\", column = \"RV\" }",
            "",
        )
        .unwrap_err();
        assert!(problems[0].message.contains("SQL Server"), "{problems:?}");
        let problems = compile_text(
            "changes = { strategy = \"snapshot_diff\", poll_interval = \"often\" }",
            "",
        )
        .unwrap_err();
        assert_eq!(
            problems[0].location,
            "versions.v1.resources.jobs.changes.poll_interval"
        );
        let twice = "changes = { strategy = \"snapshot_diff\" }";
        let problems = compile_text(twice, twice).unwrap_err();
        assert_eq!(problems[0].location, "versions.v2.resources.work.changes");
        assert!(problems[0].message.contains("already watched"));
    }
}
