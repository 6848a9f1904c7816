//! A `mssql` source's settings: the tiberius connection config from an ADO.NET connection
//! string or explicit fields, checked with every problem located.

use std::time::Duration;

use tiberius::{AuthMethod, EncryptionLevel};

use crate::config::{EncryptMode, Isolation, SourceConfig};

/// Everything a `mssql` source needs, resolved from configuration.
#[derive(Debug, Clone)]
pub struct MssqlSettings {
    /// Name in configuration.
    pub name: String,
    /// tiberius connection settings (host, login, TLS).
    pub connection: tiberius::Config,
    /// Isolation of reads.
    pub isolation: Isolation,
    /// Connections (and so queries) at once.
    pub max_concurrency: usize,
    /// Wait for a free connection before answering busy.
    pub queue_timeout: Duration,
    /// Longest a statement may take.
    pub query_timeout: Duration,
    /// Longest connecting (TCP, TLS, login) may take.
    pub login_timeout: Duration,
}

/// Resolves a `mssql` source; `Err` holds (key, message) pairs under `sources.NAME`.
pub fn resolve(name: &str, sc: &SourceConfig) -> Result<MssqlSettings, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let connection = connection(sc, &mut problems);
    if sc
        .dialect
        .is_some_and(|d| d != crate::config::DialectName::Tsql)
    {
        problems.push((
            "dialect".into(),
            "a `mssql` source speaks T-SQL; leave `dialect` out".into(),
        ));
    }
    match connection {
        Some(connection) if problems.is_empty() => Ok(MssqlSettings {
            name: name.to_string(),
            connection,
            isolation: sc.isolation,
            max_concurrency: sc.max_concurrency.max(1),
            queue_timeout: sc.queue_timeout,
            query_timeout: sc.query_timeout,
            login_timeout: sc.login_timeout,
        }),
        _ => Err(problems),
    }
}

fn connection(sc: &SourceConfig, problems: &mut Vec<(String, String)>) -> Option<tiberius::Config> {
    let mut config = if sc.connection_string.trim().is_empty() {
        let Some(host) = &sc.host else {
            problems.push((
                "connection_string".into(),
                "give an ADO.NET `connection_string` or at least `host`".into(),
            ));
            return None;
        };
        let mut config = tiberius::Config::new();
        config.host(host);
        if let Some(port) = sc.port {
            config.port(port);
        }
        if let Some(instance) = &sc.instance {
            config.instance_name(instance);
        }
        if let Some(database) = &sc.database {
            config.database(database);
        }
        match (&sc.user, &sc.password) {
            (Some(user), Some(password)) => {
                config.authentication(AuthMethod::sql_server(user, password))
            }
            _ => problems.push((
                "user".into(),
                "SQL Server authentication needs `user` and `password`".into(),
            )),
        }
        config
    } else {
        if let Some((key, _)) = sc.connection_fields().iter().find(|(_, set)| *set) {
            problems.push((
                (*key).into(),
                "give either `connection_string` or the explicit fields, not both".into(),
            ));
        }
        match tiberius::Config::from_ado_string(&sc.connection_string) {
            Ok(config) => config,
            Err(e) => {
                // The message names the bad key, never the password.
                problems.push((
                    "connection_string".into(),
                    format!("not an ADO.NET connection string: {e}"),
                ));
                return None;
            }
        }
    };
    if let Some(mode) = sc.encrypt {
        config.encryption(match mode {
            EncryptMode::Required => EncryptionLevel::Required,
            EncryptMode::On => EncryptionLevel::On,
            EncryptMode::Off => EncryptionLevel::Off,
            EncryptMode::None => EncryptionLevel::NotSupported,
        });
    }
    if sc.trust_server_certificate {
        config.trust_cert();
    }
    config.application_name("portico");
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(toml_text: &str) -> SourceConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn an_ado_string_or_explicit_fields_make_a_connection() {
        let s = resolve(
            "erp",
            &source(
                r#"kind = "mssql"
                connection_string = "server=tcp:db.example,1433;database=ERP;user id=api_ro;password=x;encrypt=DANGER_PLAINTEXT"
                isolation = "snapshot""#,
            ),
        )
        .unwrap();
        assert_eq!(s.connection.get_addr(), "db.example:1433");
        assert_eq!(s.isolation, Isolation::Snapshot);

        let s = resolve(
            "erp",
            &source(
                r#"kind = "mssql"
                host = "10.1.2.3"
                port = 1533
                database = "ERP"
                user = "api_ro"
                password = "x"
                encrypt = "none""#,
            ),
        )
        .unwrap();
        assert_eq!(s.connection.get_addr(), "10.1.2.3:1533");
        assert_eq!(s.isolation, Isolation::ReadCommitted);
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let keys = |text: &str| -> Vec<String> {
            resolve("erp", &source(text))
                .unwrap_err()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(r#"kind = "mssql""#), ["connection_string"]);
        assert_eq!(
            keys(
                r#"kind = "mssql"
            host = "db"
            dialect = "postgres""#
            ),
            ["user", "dialect"]
        );
        assert_eq!(
            keys(
                r#"kind = "mssql"
            connection_string = "server=tcp:db,1433;user id=a;password=b"
            database = "ERP""#
            ),
            ["database"]
        );
    }
}
