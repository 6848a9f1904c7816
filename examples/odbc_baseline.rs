//! Benchmark baseline: the statements Portico generates for `/v1/jobs` of the demo
//! configuration, run directly through odbc-api in a loop (no HTTP, no JSON), the best
//! straightforward way: one connection per thread, each statement prepared once per thread and
//! executed with the varying key, the row buffer bound once and reused.
//!
//! ```text
//! cargo run --release --example odbc_baseline -- [--config FILE] [--seconds N] [--threads N]
//!     [--jobs N] [--query QUERY] [--print-sql] key|filtered|page|aggregate
//! ```
//!
//! `key` looks up `J000001`…`J{jobs}` in a scattered order (as `bench/key.lua` does), `filtered`
//! and `page` run the list `QUERY` (the query string of `GET /v1/jobs?QUERY`), `aggregate` the
//! GROUP BY of `GET /v1/jobs/aggregate?QUERY`. The SQL and the
//! dialect come from the configuration's `shop` source. `--print-sql` prints the statement
//! (first line) and its parameters (one a line, `?` for the key) instead of running it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use odbc_api::buffers::TextRowSet;
use odbc_api::parameter::InputParameter;
use odbc_api::{ConnectionOptions, Cursor};
use portico::catalog::{aggregate, plan, query, Catalog};
use portico::source::{Dialect, Param, Statement, Value};

/// What the command line asked for.
struct Options {
    config: String,
    mode: String,
    seconds: u64,
    threads: usize,
    jobs: u64,
    query: String,
    print_sql: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        config: "config/demo.toml".into(),
        mode: "key".into(),
        seconds: 10,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        jobs: 10_000,
        query: "limit=100".into(),
        print_sql: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => options.config = value()?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--threads" => options.threads = value()?.parse().context("--threads")?,
            "--jobs" => options.jobs = value()?.parse().context("--jobs")?,
            "--query" => options.query = value()?,
            "--print-sql" => options.print_sql = true,
            "key" | "filtered" | "page" | "aggregate" => options.mode = arg,
            _ => bail!(
                "unknown argument {arg}; see the comment at the top of examples/odbc_baseline.rs"
            ),
        }
    }
    Ok(options)
}

/// The `n`th key of the scattered order over `jobs` jobs (7919 is prime, so every job comes).
fn key(n: u64, jobs: u64) -> String {
    format!("J{:06}", (n * 7919) % jobs + 1)
}

/// The statement Portico runs for `GET /v1/jobs/aggregate?query`.
fn aggregate_statement(
    catalog: &Catalog,
    dialect: Dialect,
    query: &str,
) -> anyhow::Result<Statement> {
    let jobs = catalog
        .resource("v1", "jobs")
        .ok_or_else(|| anyhow!("the configuration has no /v1/jobs"))?;
    let spec = aggregate::parse(jobs, query, &Default::default()).map_err(|e| anyhow!("{e:?}"))?;
    let plan = aggregate::plan(jobs, &spec, Vec::new(), dialect).map_err(|e| anyhow!("{e:?}"))?;
    Ok(dialect.aggregate(&plan.aggregate))
}

/// The statement Portico runs for `GET /v1/jobs/{key}` (`key` given) or `GET /v1/jobs?query`.
fn statement(
    catalog: &Catalog,
    dialect: Dialect,
    key: Option<&str>,
    list_query: &str,
) -> anyhow::Result<Statement> {
    let jobs = catalog
        .resource("v1", "jobs")
        .ok_or_else(|| anyhow!("the configuration has no /v1/jobs"))?;
    let mask = Default::default();
    let (spec, conditions) = match key {
        Some(id) => (
            query::QuerySpec::unfiltered(1),
            plan::key_conditions(jobs, &[id.to_string()]).map_err(|e| anyhow!("{e:?}"))?,
        ),
        None => (
            query::parse(jobs, list_query, &mask).map_err(|e| anyhow!("{e:?}"))?,
            Vec::new(),
        ),
    };
    let plan = plan::list(jobs, &spec, conditions, &mask, "").map_err(|e| anyhow!("{e:?}"))?;
    Ok(dialect.select(&plan.select))
}

/// A parameter as text, for `--print-sql`.
fn param_text(param: &Param) -> String {
    match &param.value {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Decimal(s) | Value::Date(s) | Value::Timestamp(s) => s.clone(),
    }
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let config = portico::config::load(std::path::Path::new(&options.config))?;
    let catalog = portico::catalog::compile(&config).map_err(|p| anyhow!("{p:?}"))?;
    let source = config
        .sources
        .get("shop")
        .ok_or_else(|| anyhow!("the configuration has no source `shop`"))?;
    let dialect: Dialect = source.dialect_name().into();
    let is_key = options.mode == "key";
    let is_aggregate = options.mode == "aggregate";
    let probe = if is_aggregate {
        aggregate_statement(&catalog, dialect, &options.query)?
    } else {
        statement(
            &catalog,
            dialect,
            is_key.then(|| key(0, options.jobs)).as_deref(),
            &options.query,
        )?
    };
    if options.print_sql {
        println!("{}", probe.sql);
        for (i, param) in probe.params.iter().enumerate() {
            // The key is the only parameter of a key lookup; it varies per execution.
            let text = if is_key && i == 0 {
                "?".into()
            } else {
                param_text(param)
            };
            println!("{text}");
        }
        return Ok(());
    }

    let connection_string = source.connection_string.clone();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let options = Arc::new(options);
    let workers: Vec<_> = (0..options.threads as u64)
        .map(|t| {
            let (catalog, cs, done, options) = (
                catalog.clone(),
                connection_string.clone(),
                done.clone(),
                options.clone(),
            );
            std::thread::spawn(move || -> anyhow::Result<()> {
                let env = odbc_api::environment()?;
                let conn = env.connect_with_connection_string(&cs, ConnectionOptions::default())?;
                let first = if is_aggregate {
                    aggregate_statement(&catalog, dialect, &options.query)?
                } else {
                    statement(
                        &catalog,
                        dialect,
                        is_key.then(|| key(0, options.jobs)).as_deref(),
                        &options.query,
                    )?
                };
                let mut prepared = conn.prepare(&first.sql)?;
                let mut params = first.params.clone();
                let mut buffer: Option<TextRowSet> = None;
                let mut n = t * 1_000_003;
                while Instant::now() < deadline {
                    if is_key {
                        // Only the key differs between lookups: the same SQL, another value,
                        // blank-padded to the width the planner gave the first key.
                        let mut id = key(n, options.jobs).into_bytes();
                        if let Some(Value::Text(padded)) = first.params.first().map(|p| &p.value) {
                            id.resize(padded.len().max(id.len()), b' ');
                        }
                        params[0].value = Value::Text(id);
                    }
                    let bound: Vec<Box<dyn InputParameter>> =
                        params.iter().map(portico::source::odbc::bind).collect();
                    if let Some(mut cursor) = prepared.execute(&bound[..])? {
                        let rows = match buffer.as_mut() {
                            Some(rows) => rows,
                            None => buffer.insert(TextRowSet::for_cursor(
                                first.max_rows,
                                &mut cursor,
                                Some(8192),
                            )?),
                        };
                        let mut block = cursor.bind_buffer(rows)?;
                        while let Some(batch) = block.fetch()? {
                            std::hint::black_box(batch.num_rows());
                        }
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| anyhow!("worker panicked"))??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "{}: {total} queries in {}s on {} threads = {:.0}/s",
        options.mode,
        options.seconds,
        options.threads,
        total as f64 / options.seconds as f64
    );
    Ok(())
}
