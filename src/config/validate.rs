//! The checks a configuration must pass that need nothing but the file: settings in range and
//! combinations that are unsafe. Checks that need the compiled API model run where it is built
//! (`catalog::compile`, the feeds, the webhook settings), in the same pass (`app::build`).

use std::net::SocketAddr;

use super::{Config, Isolation, Problem, SourceKind};

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
    if config.server.body_timeout.is_zero() {
        problem(
            "server.body_timeout".into(),
            "must be above zero, such as `10s`",
        );
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
    let webhooks = &config.webhooks;
    if webhooks.max_in_flight == 0 || webhooks.max_in_flight_per_subscription == 0 {
        problem(
            "webhooks.max_in_flight".into(),
            "in-flight limits must be at least 1",
        );
    }
    problems
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
    fn a_sound_file_has_no_problem() {
        let text = format!(
            "{}[sources.erp]\nkind = \"odbc\"\nconnection_string = \"DSN=erp\"\ndialect = \"sqlite\"\n",
            crate::config::TEST_AUTH
        );
        assert!(problems(&text).is_empty());
        assert!(listens_on_loopback("127.0.0.1:0") && listens_on_loopback("localhost:80"));
        assert!(!listens_on_loopback("0.0.0.0:80") && !listens_on_loopback("db:80"));
    }
}
