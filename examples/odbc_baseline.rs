//! Benchmark baseline: the statements Portico generates for the demo, run directly through
//! odbc-api in a loop (no HTTP, no JSON), on as many threads as the machine has cores.
//!
//! `cargo run --release --example odbc_baseline -- key|page SECONDS` with `DEMO_DB` set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use odbc_api::buffers::TextRowSet;
use odbc_api::parameter::InputParameter;
use odbc_api::{ConnectionOptions, Cursor};
use portico::catalog::{plan, query};
use portico::source::Statement;

fn statement(catalog: &portico::catalog::Catalog, mode: &str, n: u64) -> Statement {
    let jobs = catalog.resource("v1", "jobs").expect("demo has /v1/jobs");
    let (limit, conditions) = match mode {
        "key" => {
            let id = format!("J{:06}", (n * 7919) % 10_000 + 1);
            (1, plan::key_conditions(jobs, &[id]).expect("valid key"))
        }
        _ => (100, Vec::new()),
    };
    let spec = query::QuerySpec::unfiltered(limit);
    let plan = plan::list(jobs, &spec, conditions, &Default::default(), "").expect("plans");
    portico::source::Dialect::Sqlite.select(&plan.select)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "key".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let config = portico::config::load(std::path::Path::new("config/demo.toml"))?;
    let catalog = portico::catalog::compile(&config).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let connection_string = config.sources["shop"].connection_string.clone();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (catalog, cs, done, mode) = (
                catalog.clone(),
                connection_string.clone(),
                done.clone(),
                mode.clone(),
            );
            std::thread::spawn(move || -> anyhow::Result<()> {
                let env = odbc_api::environment()?;
                let conn = env.connect_with_connection_string(&cs, ConnectionOptions::default())?;
                let mut n = t * 1_000_003;
                while Instant::now() < deadline {
                    let st = statement(&catalog, &mode, n);
                    let params: Vec<Box<dyn InputParameter>> =
                        st.params.iter().map(portico::source::odbc::bind).collect();
                    if let Some(mut cursor) = conn.execute(&st.sql, &params[..], None)? {
                        let buffer = TextRowSet::for_cursor(st.max_rows, &mut cursor, Some(8192))?;
                        let mut block = cursor.bind_buffer(buffer)?;
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
        w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "{mode}: {total} queries in {seconds}s on {threads} threads = {:.0}/s",
        total as f64 / seconds as f64
    );
    Ok(())
}
