//! Pooled tiberius connections: a `deadpool` manager of our own (the published ones pin
//! tiberius 0.12). A connection reads the server version when it opens; before reuse its
//! socket is peeked (no round trip): one the server closed, or one whose request was cut
//! short, is dropped.

use std::sync::Mutex;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::version::ServerVersion;
use crate::source::SourceError;

/// A client on one TCP connection.
pub type Client = tiberius::Client<Compat<TcpStream>>;

/// One pooled connection.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// A second handle on the client's socket, only peeked while the connection is idle.
    probe: std::net::TcpStream,
    /// Set while a request is under way; a connection dropped mid-request stays set and is
    /// discarded, since the server may still be sending its answer.
    pub busy: bool,
}

/// Opens and checks connections for one source.
pub struct Connector {
    name: String,
    config: tiberius::Config,
    login_timeout: Duration,
    version: Mutex<Option<ServerVersion>>,
}

/// How long a pooled connection may sit idle and still be reused on a peek alone.
const QUIET_BEFORE_ROUND_TRIP: std::time::Duration = std::time::Duration::from_secs(30);

impl Connector {
    /// A connector for `config`.
    pub fn new(name: &str, config: tiberius::Config, login_timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            config,
            login_timeout,
            version: Mutex::new(None),
        }
    }

    /// The version the last connection reported.
    pub fn version(&self) -> Option<ServerVersion> {
        self.version.lock().ok().and_then(|v| v.clone())
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    async fn open(&self) -> Result<(Client, std::net::TcpStream), SourceError> {
        let mut config = self.config.clone();
        loop {
            let tcp = TcpStream::connect(config.get_addr())
                .await
                .map_err(|e| self.unavailable(e))?;
            tcp.set_nodelay(true).map_err(|e| self.unavailable(e))?;
            let (tcp, probe) = self.split_probe(tcp)?;
            match tiberius::Client::connect(config.clone(), tcp.compat_write()).await {
                Ok(client) => return Ok((client, probe)),
                // An Azure gateway or an availability group listener sends us elsewhere once.
                Err(tiberius::error::Error::Routing { host, port })
                    if config.get_addr() != format!("{host}:{port}") =>
                {
                    config.host(&host);
                    config.port(port);
                }
                Err(e) => return Err(self.unavailable(e)),
            }
        }
    }

    /// The stream and a duplicate handle on its socket (non-blocking, like the stream).
    fn split_probe(&self, tcp: TcpStream) -> Result<(TcpStream, std::net::TcpStream), SourceError> {
        let std = tcp.into_std().map_err(|e| self.unavailable(e))?;
        let probe = std.try_clone().map_err(|e| self.unavailable(e))?;
        let tcp = TcpStream::from_std(std).map_err(|e| self.unavailable(e))?;
        Ok((tcp, probe))
    }

    async fn read_version(&self, client: &mut Client) -> Result<ServerVersion, SourceError> {
        let text = client
            .simple_query(ServerVersion::QUERY)
            .await
            .map_err(|e| self.unavailable(e))?
            .into_row()
            .await
            .map_err(|e| self.unavailable(e))?
            .and_then(|row| row.get::<&str, _>(0).map(str::to_string))
            .ok_or_else(|| self.unavailable("the server did not report its version"))?;
        let version = ServerVersion::parse(&text)
            .ok_or_else(|| self.unavailable(format!("unreadable server version `{text}`")))?;
        if !version.supported() {
            return Err(self.unavailable(format!(
                "SQL Server {} ({text}) is older than 2008, the oldest Portico serves",
                version.product()
            )));
        }
        Ok(version)
    }
}

impl managed::Manager for Connector {
    type Type = Connection;
    type Error = SourceError;

    async fn create(&self) -> Result<Connection, SourceError> {
        let opened = tokio::time::timeout(self.login_timeout, async {
            let (mut client, probe) = self.open().await?;
            let version = self.read_version(&mut client).await?;
            Ok::<_, SourceError>((client, probe, version))
        })
        .await
        .map_err(|_| self.unavailable(format!("no login within {:?}", self.login_timeout)))?;
        let (client, probe, version) = opened?;
        if let Ok(mut known) = self.version.lock() {
            if known.as_ref() != Some(&version) {
                tracing::info!(source = %self.name, version = %version.text, product = version.product(), "connected to SQL Server");
                *known = Some(version);
            }
        }
        Ok(Connection {
            client,
            probe,
            busy: false,
        })
    }

    /// A round trip (`SELECT 1`) per checkout would cost as much as the statement it guards;
    /// peeking the idle socket sees what a dead connection shows without one: the server's
    /// FIN or reset. Unread bytes are the rest of an answer a read stopped early, which
    /// tiberius drains before the next request. A connection that dies unseen fails its
    /// statement with an I/O error, and the source retries once on another connection.
    /// A connection idle for longer than [`QUIET_BEFORE_ROUND_TRIP`] is asked `SELECT 1` as
    /// well: a firewall or a failover can drop it without a FIN, and a statement on such a
    /// half-open socket would wait out its whole timeout instead of a login's.
    async fn recycle(
        &self,
        conn: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<SourceError> {
        if conn.busy {
            return Err(RecycleError::message("a request on it was cut short"));
        }
        match conn.probe.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) => return Err(RecycleError::message("closed by the server")),
            Ok(_) => {}
            Err(e) => return Err(RecycleError::message(format!("socket error: {e}"))),
        }
        if metrics.last_used() < QUIET_BEFORE_ROUND_TRIP {
            return Ok(());
        }
        let checked = tokio::time::timeout(self.login_timeout, async {
            conn.client.simple_query("SELECT 1").await?.into_row().await
        })
        .await;
        match checked {
            Ok(Ok(Some(_))) => Ok(()),
            Ok(Ok(None)) => Err(RecycleError::message("SELECT 1 returned no row")),
            Ok(Err(e)) => Err(RecycleError::message(format!("SELECT 1 failed: {e}"))),
            Err(_) => Err(RecycleError::message("SELECT 1 timed out")),
        }
    }
}
