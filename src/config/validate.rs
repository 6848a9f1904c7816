//! The checks a configuration must pass that need nothing but the file: settings in range and
//! combinations that are unsafe. Checks that need the compiled API model run where it is built
//! (`catalog::compile`, the feeds, the webhook settings), in the same pass (`app::build`).

use std::net::SocketAddr;

use super::{ChangesConfig, Config, Isolation, Problem, SourceKind, StrategyName};

/// Largest `[server] export_chunk_rows`: one chunk's rows are held in memory while they are
/// written out.
pub const MAX_EXPORT_CHUNK_ROWS: usize = 50_000;

/// Every problem of `config` that the file alone shows, each at its location.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |location: String, message: &str| {
        problems.push(Problem {
            location,
            message: message.to_string(),
        })
    };
    for (key, value) in [
        ("max_filter_terms", config.server.max_filter_terms),
        ("max_bound_parameters", config.server.max_bound_parameters),
    ] {
        if value == 0 {
            problem(format!("server.{key}"), "must be at least 1");
        }
    }
    if config.server.max_export_rows == 0 {
        problem("server.max_export_rows".into(), "must be at least 1");
    }
    if !(1..=MAX_EXPORT_CHUNK_ROWS).contains(&config.server.export_chunk_rows) {
        problem(
            "server.export_chunk_rows".into(),
            &format!("must be between 1 and {MAX_EXPORT_CHUNK_ROWS}"),
        );
    }
    for (version, vc) in &config.versions {
        for (name, rc) in &vc.resources {
            if rc.max_export_rows == Some(0) {
                problem(
                    format!("versions.{version}.resources.{name}.max_export_rows"),
                    "must be at least 1",
                );
            }
        }
    }
    if let Err(why) = check_listen_address(&config.server.listen) {
        problem("server.listen".into(), &why);
    }
    if config.server.body_timeout.is_zero() {
        problem(
            "server.body_timeout".into(),
            "must be above zero, such as `10s`",
        );
    }
    if let Some(bound) = config.server.ready_max_feed_lag {
        // A feed is that far behind between two polls anyway: it would never be ready.
        let slowest = config
            .versions
            .iter()
            .flat_map(|(v, vc)| vc.resources.iter().map(move |(r, rc)| (v, r, rc)))
            .filter_map(|(v, r, rc)| Some((v, r, rc.changes.as_ref()?.poll_interval)))
            .max_by_key(|(_, _, interval)| *interval);
        match slowest {
            _ if bound.is_zero() => problem(
                "server.ready_max_feed_lag".into(),
                "must be above zero, such as `2m` (leave it out to ignore feeds)",
            ),
            Some((version, resource, interval)) if interval >= bound => problem(
                "server.ready_max_feed_lag".into(),
                &format!(
                    "must be longer than every feed's poll_interval (`{interval:?}` at \
                     versions.{version}.resources.{resource}.changes)"
                ),
            ),
            _ => {}
        }
    }
    let browsers = config
        .server
        .cors
        .iter()
        .flat_map(super::cross_origin::check)
        .chain(super::compression::check(&config.server.compression));
    for found in browsers {
        problem(found.location, &found.message);
    }
    let development = config.auth.as_ref().is_some_and(|a| a.development);
    if development && !listens_on_loopback(&config.server.listen) {
        // Anyone can mint tokens for a development secret: such a config stays local.
        problem(
            "auth.development".into(),
            &format!(
                "a development configuration only listens on loopback, not `{}`",
                config.server.listen
            ),
        );
    }
    if let Some(rl) = &config.rate_limit {
        if !(rl.requests_per_second.is_finite() && rl.requests_per_second > 0.0 && rl.burst >= 1) {
            problem(
                "rate_limit".into(),
                "`requests_per_second` must be above 0 and `burst` at least 1",
            );
        }
    }
    for (name, source) in &config.sources {
        let at = format!("sources.{name}");
        if source.max_concurrency == 0 {
            problem(format!("{at}.max_concurrency"), "must be at least 1");
        }
        for (key, why) in source.breaker.problems() {
            problem(format!("{at}.breaker.{key}"), why);
        }
        if source.kind == SourceKind::Odbc {
            if source.connection_string.trim().is_empty() {
                problem(
                    format!("{at}.connection_string"),
                    "an ODBC source needs a connection string",
                );
            }
            if source.dialect.is_none() {
                problem(
                    format!("{at}.dialect"),
                    "an ODBC source names its dialect (sqlite, postgres, mysql, tsql, generic)",
                );
            }
            let mssql_only = source.connection_fields().into_iter().chain([
                ("encrypt", source.encrypt.is_some()),
                ("trust_server_certificate", source.trust_server_certificate),
                ("isolation", source.isolation != Isolation::ReadCommitted),
            ]);
            for (key, _) in mssql_only.filter(|(_, set)| *set) {
                problem(
                    format!("{at}.{key}"),
                    "only `mssql` sources take this; an ODBC source puts it in its connection string",
                );
            }
            if source
                .health_statement
                .as_ref()
                .is_some_and(|s| s.trim().is_empty())
            {
                problem(
                    format!("{at}.health_statement"),
                    "must be a statement the driver accepts, such as `SELECT COUNT(*) FROM Shippers`",
                );
            }
            if let Some(snapshot) = &source.snapshot {
                if snapshot.max_rows == 0 {
                    problem(format!("{at}.snapshot.max_rows"), "must be at least 1");
                }
                if snapshot.ttl.is_zero() {
                    problem(
                        format!("{at}.snapshot.ttl"),
                        "must be above zero, such as `5m`",
                    );
                }
            }
        } else {
            let odbc_only = [
                ("health_statement", source.health_statement.is_some()),
                (
                    "capabilities",
                    source.capabilities != super::CapabilitiesConfig::default(),
                ),
                ("probe", source.probe.is_some()),
                ("snapshot", source.snapshot.is_some()),
            ];
            for (key, _) in odbc_only.into_iter().filter(|(_, set)| *set) {
                problem(
                    format!("{at}.{key}"),
                    "only ODBC sources take this: SQL Server over TDS does all of it",
                );
            }
        }
    }
    for (version, vc) in &config.versions {
        for (name, rc) in &vc.resources {
            let Some(changes) = &rc.changes else {
                continue;
            };
            if let Some(message) = reconcile_problem(changes) {
                problem(
                    format!("versions.{version}.resources.{name}.changes.reconcile_interval"),
                    message,
                );
            }
            // Zero would poll the legacy database without pause.
            if changes.poll_interval.is_zero() {
                problem(
                    format!("versions.{version}.resources.{name}.changes.poll_interval"),
                    "must be above zero, such as `5s`",
                );
            }
        }
    }
    let state = &config.state;
    for (key, value) in [
        ("event_retention", state.event_retention),
        ("delivery_retention", state.delivery_retention),
        ("dead_letter_retention", state.dead_letter_retention),
        ("prune_interval", state.prune_interval),
    ] {
        if value.is_zero() {
            problem(format!("state.{key}"), "must be above zero, such as `3d`");
        }
    }
    if state.prune_batch == 0 {
        problem("state.prune_batch".into(), "must be at least 1");
    }
    for (key, value) in [
        ("feed_lease", state.feed_lease),
        ("delivery_lease", state.delivery_lease),
        ("idempotency_lease", state.idempotency_lease),
    ] {
        if value.is_zero() {
            problem(format!("state.{key}"), "must be above zero, such as `10s`");
        }
    }
    // One process never has another send its claimed deliveries; a fleet would.
    if state.url.is_some() && state.delivery_lease <= config.webhooks.timeout {
        problem(
            "state.delivery_lease".into(),
            "must be longer than webhooks.timeout: a claim that ends while its attempt still \
             runs lets another replica send the same delivery",
        );
    }
    if let Some(url) = &state.url {
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres || url.parse::<tokio_postgres::Config>().is_err() {
            problem(
                "state.url".into(),
                "must be a PostgreSQL URL: postgres://user:password@host:port/database",
            );
        }
        if state.pool_size == 0 {
            problem("state.pool_size".into(), "must be at least 1");
        }
    }
    if state
        .replica
        .as_deref()
        .is_some_and(|r| r.trim().is_empty())
    {
        problem("state.replica".into(), "must not be empty");
    }
    let webhooks = &config.webhooks;
    if webhooks.max_in_flight == 0 || webhooks.max_in_flight_per_subscription == 0 {
        problem(
            "webhooks.max_in_flight".into(),
            "in-flight limits must be at least 1",
        );
    }
    let telemetry = &config.telemetry;
    if let Some(message) = telemetry
        .otlp_endpoint
        .as_deref()
        .and_then(super::otlp_endpoint_problem)
    {
        problem("telemetry.otlp_endpoint".into(), message);
    }
    if telemetry.service_name.trim().is_empty() {
        problem("telemetry.service_name".into(), "must not be empty");
    }
    if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
        problem(
            "telemetry.sample_ratio".into(),
            "must be between 0.0 and 1.0",
        );
    }
    if telemetry.export_timeout.is_zero() {
        problem("telemetry.export_timeout".into(), "must be above zero");
    }
    problems
}

/// What is wrong with a feed's `reconcile_interval`, if anything: reconciliation is offered
/// where it finds what the strategy cannot see.
fn reconcile_problem(changes: &ChangesConfig) -> Option<&'static str> {
    let interval = changes.reconcile_interval?;
    match changes.strategy {
        _ if interval.is_zero() => Some("must be above zero, such as `1h`"),
        StrategyName::HighWaterMark => None,
        StrategyName::SnapshotDiff => Some(
            "`snapshot_diff` already compares every row at each poll; a reconciliation pass \
             would find nothing more",
        ),
        StrategyName::ChangeTracking => Some(
            "`change_tracking` reads every committed change, deletes included, from SQL \
             Server itself; a reconciliation pass would find nothing more",
        ),
        StrategyName::Rowversion => Some(
            "`rowversion` is stamped by SQL Server on every write and holds back transactions \
             in flight; it misses deletes only, and reconciliation is not offered for it (use \
             `change_tracking` to see deletes)",
        ),
    }
}

/// Whether `listen` is an address Portico can bind: `HOST:PORT` with an IP address, a
/// bracketed IPv6 address or a host name, and a port from 0 (any free port) to 65535.
pub fn check_listen_address(listen: &str) -> Result<(), String> {
    if listen.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let usage = "write HOST:PORT, such as `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080` \
                 (port 0 picks a free port)";
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(format!("has no port: {usage}"));
    };
    let name = |h: &str| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("`{port}` is not a port (0 to 65535): {usage}"));
    }
    if !name(host) {
        return Err(format!("`{host}` is not a host: {usage}"));
    }
    Ok(())
}

fn listens_on_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(address) => address.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let config = crate::config::parse("t.toml", text, &|_| None).unwrap();
        validate(&config).into_iter().map(|p| p.location).collect()
    }

    #[test]
    fn every_check_the_file_alone_shows_names_its_location() {
        let text = format!(
            "{}[server]\nlisten = \"0.0.0.0:8080\"\nbody_timeout = \"0s\"\nmax_filter_terms = 0\n\
             ready_max_feed_lag = \"0s\"\n\
             [rate_limit]\nrequests_per_second = 0.0\nburst = 1\n\
             [state]\nevent_retention = \"0s\"\nprune_batch = 0\n\
             [webhooks]\nmax_in_flight = 0\n\
             [sources.erp]\nkind = \"odbc\"\nmax_concurrency = 0\nhost = \"db\"\nisolation = \"snapshot\"\n",
            crate::config::TEST_AUTH
        );
        assert_eq!(
            problems(&text),
            [
                "server.max_filter_terms",
                "server.body_timeout",
                "server.ready_max_feed_lag",
                "auth.development",
                "rate_limit",
                "sources.erp.max_concurrency",
                "sources.erp.connection_string",
                "sources.erp.dialect",
                "sources.erp.host",
                "sources.erp.isolation",
                "state.event_retention",
                "state.prune_batch",
                "webhooks.max_in_flight",
            ]
        );
    }

    #[test]
    fn telemetry_needs_an_http_endpoint_a_name_a_ratio_and_a_timeout() {
        let telemetry = |body: &str| problems(&format!("[telemetry]\n{body}\n"));
        assert!(telemetry("").is_empty(), "tracing off by default");
        assert!(telemetry("otlp_endpoint = \"http://127.0.0.1:4318\"").is_empty());
        assert_eq!(
            telemetry(
                "otlp_endpoint = \"grpc://collector:4317\"\nservice_name = \" \"\n\
                 sample_ratio = 1.5\nexport_timeout = \"0s\""
            ),
            [
                "telemetry.otlp_endpoint",
                "telemetry.service_name",
                "telemetry.sample_ratio",
                "telemetry.export_timeout",
            ]
        );
    }

    #[test]
    fn a_shared_state_store_needs_a_postgres_url_and_leases_that_outlast_an_attempt() {
        let fleet = |state: &str| {
            problems(&format!(
                "{}[webhooks]\ntimeout = \"30s\"\n[state]\n{state}\n",
                crate::config::TEST_AUTH
            ))
        };
        assert!(fleet("url = \"postgres://p@db/portico\"\ndelivery_lease = \"1m\"").is_empty());
        assert_eq!(
            fleet(
                "url = \"mysql://db/portico\"\ndelivery_lease = \"30s\"\nfeed_lease = \"0s\"\n\
                 pool_size = 0\nreplica = \" \""
            ),
            [
                "state.feed_lease",
                "state.delivery_lease",
                "state.url",
                "state.pool_size",
                "state.replica"
            ]
        );
        // One process: no other replica can send a delivery whose claim ran out.
        assert!(fleet("delivery_lease = \"30s\"").is_empty());
    }

    #[test]
    fn breaker_settings_are_in_range() {
        let text = format!(
            "{}[sources.erp]\nkind = \"mssql\"\nhost = \"db\"\n\
             breaker = {{ failure_rate = 1.5, min_statements = 0, window = \"0s\", cool_down = \"0s\", probes = 0 }}\n\
             [sources.edge]\nkind = \"mssql\"\nhost = \"db\"\nbreaker = {{ failure_rate = 0.0 }}\n\
             [sources.fine]\nkind = \"mssql\"\nhost = \"db\"\n\
             breaker = {{ enabled = false, failure_rate = 1.0, window = \"10s\", cool_down = \"2s\", probes = 1 }}\n",
            crate::config::TEST_AUTH
        );
        assert_eq!(
            problems(&text),
            [
                "sources.erp.breaker.failure_rate",
                "sources.erp.breaker.min_statements",
                "sources.erp.breaker.window",
                "sources.erp.breaker.cool_down",
                "sources.erp.breaker.probes",
                "sources.edge.breaker.failure_rate",
            ]
        );
        let defaults = crate::config::BreakerConfig::default();
        assert!(defaults.enabled && defaults.problems().is_empty());
    }

    #[test]
    fn weak_driver_settings_are_in_range_and_on_odbc_sources_only() {
        let text = format!(
            "{}[sources.access]\nkind = \"odbc\"\nconnection_string = \"Driver=MDBTools;DBQ=x.mdb\"\n\
             dialect = \"generic\"\nhealth_statement = \" \"\n\
             snapshot = {{ max_rows = 0, ttl = \"0s\" }}\n\
             [sources.erp]\nkind = \"mssql\"\nhost = \"db\"\nhealth_statement = \"SELECT 1\"\n\
             capabilities = {{ order_by = false }}\nsnapshot = {{ max_rows = 10 }}\n\
             [sources.fine]\nkind = \"odbc\"\nconnection_string = \"DSN=x\"\ndialect = \"generic\"\n\
             health_statement = \"SELECT COUNT(*) FROM T\"\nprobe = false\n\
             capabilities = {{ parameters = false, writes = false }}\n\
             snapshot = {{ max_rows = 10, ttl = \"1m\" }}\n",
            crate::config::TEST_AUTH
        );
        assert_eq!(
            problems(&text),
            [
                "sources.access.health_statement",
                "sources.access.snapshot.max_rows",
                "sources.access.snapshot.ttl",
                "sources.erp.health_statement",
                "sources.erp.capabilities",
                "sources.erp.snapshot",
            ]
        );
        let misspelled =
            "[sources.a]\nkind = \"odbc\"\ncapabilities = { order_by = false, orderby = true }\n";
        let err = crate::config::parse("t.toml", misspelled, &|_| None).unwrap_err();
        assert!(err.problems[0].message.contains("orderby"), "{err}");
    }

    #[test]
    fn reconcile_interval_is_taken_by_high_water_mark_only_and_above_zero() {
        let with = |changes: &str| {
            let text = format!(
                "{}[sources.erp]\nkind = \"odbc\"\nconnection_string = \"DSN=erp\"\ndialect = \"sqlite\"\n\
                 [versions.v1.resources.jobs]\nsource = \"erp\"\ntable = \"JOBHDR\"\nkey = [\"id\"]\n\
                 changes = {changes}\n\
                 [versions.v1.resources.jobs.fields]\nid = {{ column = \"JOB_NO\", type = \"string\" }}\n",
                crate::config::TEST_AUTH
            );
            let config = crate::config::parse("t.toml", &text, &|_| None).unwrap();
            validate(&config)
        };
        let hwm = "{ strategy = \"high_water_mark\", column = \"LAST_UPD\"";
        assert!(with(&format!("{hwm} }}")).is_empty());
        assert!(with(&format!("{hwm}, reconcile_interval = \"1h\" }}")).is_empty());
        let zero = with(&format!("{hwm}, reconcile_interval = \"0s\" }}"));
        assert_eq!(
            zero[0].location,
            "versions.v1.resources.jobs.changes.reconcile_interval"
        );
        assert!(zero[0].message.contains("above zero"), "{zero:?}");
        let busy = with(&format!("{hwm}, poll_interval = \"0s\" }}"));
        assert_eq!(
            busy[0].location,
            "versions.v1.resources.jobs.changes.poll_interval"
        );
        for (strategy, says) in [
            ("snapshot_diff", "every row"),
            ("change_tracking", "deletes included"),
            ("rowversion", "misses deletes only"),
        ] {
            let found = with(&format!(
                "{{ strategy = \"{strategy}\", column = \"RV\", reconcile_interval = \"1h\" }}"
            ));
            assert_eq!(found.len(), 1, "{strategy}: {found:?}");
            assert!(found[0].message.contains(says), "{found:?}");
        }
    }

    #[test]
    fn a_feed_lag_bound_must_exceed_every_poll_interval() {
        let text = |bound: &str| {
            format!(
                "{}[server]\nready_max_feed_lag = \"{bound}\"\n\
                 [sources.erp]\nkind = \"odbc\"\nconnection_string = \"DSN=erp\"\ndialect = \"sqlite\"\n\
                 [versions.v1.resources.jobs]\nsource = \"erp\"\ntable = \"JOBS\"\nkey = [\"id\"]\n\
                 changes = {{ strategy = \"snapshot_diff\", poll_interval = \"30s\" }}\n\
                 [versions.v1.resources.jobs.fields]\nid = {{ column = \"ID\", type = \"string\" }}\n",
                crate::config::TEST_AUTH
            )
        };
        assert_eq!(problems(&text("30s")), ["server.ready_max_feed_lag"]);
        assert!(problems(&text("2m")).is_empty());
    }

    #[test]
    fn a_sound_file_has_no_problem() {
        let text = format!(
            "{}[sources.erp]\nkind = \"odbc\"\nconnection_string = \"DSN=erp\"\ndialect = \"sqlite\"\n",
            crate::config::TEST_AUTH
        );
        assert!(problems(&text).is_empty());
        assert!(listens_on_loopback("127.0.0.1:0") && listens_on_loopback("localhost:80"));
        assert!(!listens_on_loopback("0.0.0.0:80") && !listens_on_loopback("db:80"));
    }

    #[test]
    fn a_listen_address_is_host_and_port() {
        for good in [
            "127.0.0.1:0",
            "0.0.0.0:8080",
            "[::1]:8080",
            "localhost:65535",
            "api.example.internal:80",
        ] {
            assert_eq!(check_listen_address(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("8080", "has no port"),
            ("localhost", "has no port"),
            ("127.0.0.1:99999", "`99999` is not a port"),
            ("127.0.0.1:http", "`http` is not a port"),
            (":8080", "`` is not a host"),
            ("::1:8080", "`::1` is not a host"),
            ("my host:80", "`my host` is not a host"),
        ] {
            let error = check_listen_address(bad).unwrap_err();
            assert!(
                error.contains(why) && error.contains("HOST:PORT"),
                "{bad}: {error}"
            );
        }
        assert_eq!(
            problems("[server]\nlisten = \"localhost\"\n"),
            ["server.listen"]
        );
    }
}
