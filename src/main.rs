//! The `portico` command: serve, check, introspect, openapi, token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

/// A modern REST front for legacy databases.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum OpenapiAction {
    /// Report what breaks clients of OLD when NEW is served; exit 1 on any breaking change.
    Diff {
        /// The published document.
        old: PathBuf,
        /// The candidate document.
        new: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured API.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "config/portico.toml")]
        config: PathBuf,
        /// Address to listen on, HOST:PORT (`127.0.0.1:0` picks a free port); overrides
        /// PORTICO_LISTEN, which overrides `[server] listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Validate a configuration and prove it against the databases: every source answers,
    /// every column named exists, every key is unique, every declared type fits a sample.
    Check {
        /// Configuration file.
        #[arg(long, default_value = "config/portico.toml")]
        config: PathBuf,
        /// Do not probe keys for duplicates and NULLs (a full scan): every resource's, or
        /// only those named (`order_details` in any version, or `v1.order_details`).
        #[arg(long, value_name = "RESOURCE", num_args = 0.., value_delimiter = ',')]
        skip_key_probe: Option<Vec<String>>,
        /// Rows read per resource to prove the declared types (0: none).
        #[arg(long, value_name = "N", default_value_t = portico::check::DEFAULT_SAMPLE_ROWS)]
        sample_rows: usize,
    },
    /// Print a starter configuration from a source's catalog.
    Introspect {
        /// Configuration file that declares the source.
        #[arg(long, default_value = "config/portico.toml")]
        config: PathBuf,
        /// Source to read.
        #[arg(long)]
        source: String,
        /// API version to put the resources in.
        #[arg(long, default_value = "v1")]
        version: String,
    },
    /// Print the OpenAPI document of a version (or compare two documents: `openapi diff`).
    Openapi {
        #[command(subcommand)]
        action: Option<OpenapiAction>,
        /// Configuration file.
        #[arg(long, default_value = "config/portico.toml")]
        config: PathBuf,
        /// API version.
        #[arg(long, default_value = "v1")]
        version: String,
        /// `json` or `yaml`.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Mint a development token (HS, signed with the config's secret; development configs only).
    Token {
        /// Configuration file; its [auth] must say `development = true`.
        #[arg(long, default_value = "config/portico.toml")]
        config: PathBuf,
        /// `sub` of the token.
        #[arg(long, default_value = "developer")]
        subject: String,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A claim `name=value` (repeat; a value that parses as JSON is taken as JSON).
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// Lifetime, e.g. `15m` or `8h`.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `serve` exports traces; a file that cannot be read here is reported by `serve`.
    let export = match &cli.command {
        Command::Serve { config, .. } => trace_export(config),
        _ => None,
    };
    let traces = match portico::telemetry::init_with_traces(cli.log_json, export.as_ref()) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // After the graceful stop: the last requests' spans go out before the process ends.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

/// Where `serve` exports spans: `[telemetry]` of the file, when it names a valid endpoint
/// (a file that cannot be read, or a wrong endpoint, is reported by `serve` itself).
fn trace_export(config: &std::path::Path) -> Option<portico::telemetry::traces::Export> {
    let telemetry = portico::config::load_draft(config).ok()?.config.telemetry;
    let endpoint = telemetry
        .otlp_endpoint
        .filter(|e| portico::config::otlp_endpoint_problem(e).is_none())?;
    Some(portico::telemetry::traces::Export {
        endpoint,
        service_name: telemetry.service_name,
        sample_ratio: telemetry.sample_ratio,
        timeout: telemetry.export_timeout,
    })
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config, listen } => {
            let listen = match listen {
                Some(address) => Some(("--listen", address)),
                None => std::env::var("PORTICO_LISTEN")
                    .ok()
                    .map(|address| ("PORTICO_LISTEN", address)),
            };
            if let Some((given_by, address)) = &listen {
                if let Err(why) = portico::config::check_listen_address(address) {
                    bail!("{given_by} `{address}`: {why}");
                }
            }
            serve(config, listen.map(|(_, address)| address))
        }
        Command::Check {
            config,
            skip_key_probe,
            sample_rows,
        } => {
            use portico::check::{KeyProbe, Options};
            let key_probe = match skip_key_probe {
                None => KeyProbe::All,
                Some(names) if names.is_empty() => KeyProbe::Off,
                Some(names) => KeyProbe::Except(names),
            };
            let options = Options {
                key_probe,
                sample_rows,
                ..Options::default()
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(portico::check::report_with(&config, &options));
            for note in &report.notes {
                println!("{note}");
            }
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            if report.problems.is_empty() {
                println!("{}: ok", config.display());
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "{} problem(s) in {}:",
                report.problems.len(),
                config.display()
            );
            for p in report.problems {
                eprintln!("  {p}");
            }
            Ok(ExitCode::FAILURE)
        }
        Command::Introspect {
            config,
            source,
            version,
        } => {
            let loaded = portico::config::load(&config)?;
            let Some(declared) = loaded.sources.get(&source) else {
                bail!("{} declares no source `{source}`", config.display());
            };
            let raw: toml::Table = toml::from_str(&std::fs::read_to_string(&config)?)?;
            let raw_source = raw
                .get("sources")
                .and_then(|s| s.get(&source))
                .and_then(|s| s.as_table())
                .cloned()
                .unwrap_or_default();
            let listen = raw
                .get("server")
                .and_then(|s| s.get("listen"))
                .and_then(toml::Value::as_str);
            let tables = portico::introspect::read_catalog(&declared.connection_string)
                .with_context(|| format!("reading the catalog of source `{source}`"))?;
            let starter =
                portico::introspect::render(&source, &raw_source, &version, &tables, listen);
            print!("{}", starter.text);
            for warning in &starter.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi {
            action: Some(OpenapiAction::Diff { old, new }),
            ..
        } => {
            let read = |path: &PathBuf| -> anyhow::Result<serde_json::Value> {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JSON document", path.display()))
            };
            let report = portico::openapi::diff::diff(&read(&old)?, &read(&new)?);
            for line in &report.additions {
                println!("added: {line}");
            }
            for line in &report.breaking {
                println!("BREAKING: {line}");
            }
            println!(
                "{} breaking change(s), {} addition(s)",
                report.breaking.len(),
                report.additions.len()
            );
            Ok(if report.breaking.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Openapi {
            action: None,
            config,
            version,
            format,
        } => {
            let file = config.display().to_string();
            let (_, services) = portico::app::load(&config)?;
            let Some(document) = services.documents.get(&version) else {
                bail!("{file} declares no version `{version}`");
            };
            match format.as_str() {
                "json" => print!("{}", document.json),
                "yaml" => print!("{}", document.yaml),
                other => bail!("--format {other}: use json or yaml"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            config,
            subject,
            scopes,
            claims,
            ttl,
        } => {
            let loaded = portico::config::load(&config)?;
            let Some(auth) = &loaded.auth else {
                bail!("{} has no [auth] section", config.display());
            };
            let mut map = serde_json::Map::new();
            for claim in claims {
                let Some((name, value)) = claim.split_once('=') else {
                    bail!("--claim `{claim}` must be written name=value");
                };
                let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
                map.insert(name.to_string(), value);
            }
            let request = portico::auth::token::TokenRequest {
                subject,
                scopes,
                claims: map,
                ttl: portico::config::parse_duration(&ttl).map_err(anyhow::Error::msg)?,
            };
            println!("{}", portico::auth::token::mint(auth, &request)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[actix_web::main]
async fn serve(path: PathBuf, listen: Option<String>) -> anyhow::Result<ExitCode> {
    let file = path.display().to_string();
    let (config, services) = portico::app::load_listening_on(&path, listen.as_deref())?;
    let origin = portico::app::Origin {
        path,
        listen,
        prover: Some(portico::check::reload_prover()),
    };
    let running = portico::app::start_from(services, &config, origin)?;
    if let Some(reloader) = running.reloader.clone() {
        tokio::spawn(reload_on_hangup(reloader));
    }
    tracing::info!(address = %running.address, config = %file, "portico listening");
    running.server.await.context("server failed")?;
    running.background.stop().await;
    tracing::info!("portico stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reloads the configuration file on each `SIGHUP`; a refused file is logged with every
/// problem, and the running configuration keeps serving.
async fn reload_on_hangup(reloader: std::sync::Arc<portico::app::Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload with POST /admin/reload");
        return;
    };
    while hangups.recv().await.is_some() {
        match reloader.reload_file().await {
            Ok(reloaded) => {
                tracing::info!(
                    generation = reloaded.generation,
                    "SIGHUP: configuration reloaded"
                )
            }
            Err(portico::http::ReloadError::Refused(problems)) => {
                tracing::error!(
                    problems = problems.len(),
                    "SIGHUP: configuration refused; the running one keeps serving"
                );
                for problem in problems {
                    tracing::error!(location = %problem.location, "{}", problem.message);
                }
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: configuration not reloaded"),
        }
    }
}
