//! The TOML model of a Portico configuration, exactly as an operator writes it.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::auth::{AuthConfig, RateLimitConfig, RowPolicyConfig};
use super::changes::{ChangesConfig, Subscriptions, WebhooksConfig};
use super::write::{StateConfig, WriteOp, WriteValueConfig};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Response cache settings.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Legacy databases, by name.
    #[serde(default)]
    pub sources: IndexMap<String, SourceConfig>,
    /// API versions (`v1`, `v2`), each a named set of resources.
    #[serde(default)]
    pub versions: IndexMap<String, VersionConfig>,
    /// Bearer JWT verification; without it only anonymous resources can be served.
    pub auth: Option<AuthConfig>,
    /// Requests per principal.
    pub rate_limit: Option<RateLimitConfig>,
    /// Portico's own durable store.
    #[serde(default)]
    pub state: StateConfig,
    /// How webhook deliveries are made.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Webhook receivers declared here (more can be added through the admin API).
    #[serde(default)]
    pub subscriptions: Subscriptions,
    /// Trace export (OpenTelemetry); off without an endpoint.
    #[serde(default)]
    pub telemetry: super::TelemetryConfig,
}

/// Where and how Portico listens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to bind, `127.0.0.1:8080` by default.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTP worker threads; the number of cores when absent.
    pub workers: Option<usize>,
    /// How long in-flight requests get to finish on SIGTERM (whole seconds).
    #[serde(
        default = "default_shutdown",
        deserialize_with = "super::units::duration"
    )]
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request body (then 408).
    #[serde(
        default = "default_body_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub body_timeout: Duration,
    /// Most filter parameters one list request may carry.
    #[serde(default = "default_max_filter_terms")]
    pub max_filter_terms: usize,
    /// Most values one list request's filters may bind (each `in`/`nin` value counts; a
    /// `prefix` counts as the parameters its dialect binds).
    #[serde(default = "default_max_bound_parameters")]
    pub max_bound_parameters: usize,
    /// `/readyz` answers 503 while a change feed is further behind the database than this;
    /// feeds do not count when absent.
    #[serde(default, deserialize_with = "super::units::optional_duration")]
    pub ready_max_feed_lag: Option<Duration>,
    /// Most rows one export (`Accept: application/x-ndjson` or `text/csv` on a list) streams;
    /// a resource's `max_export_rows` overrides it.
    #[serde(default = "default_max_export_rows")]
    pub max_export_rows: u64,
    /// Rows an export reads per statement (each chunk a short keyset-paged SELECT).
    #[serde(default = "default_export_chunk_rows")]
    pub export_chunk_rows: usize,
    /// Browser pages on other origins allowed to call; no CORS headers at all when absent.
    pub cors: Option<super::CorsConfig>,
    /// Response compression.
    #[serde(default)]
    pub compression: super::CompressionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            workers: None,
            shutdown_timeout: default_shutdown(),
            body_timeout: default_body_timeout(),
            max_filter_terms: default_max_filter_terms(),
            max_bound_parameters: default_max_bound_parameters(),
            ready_max_feed_lag: None,
            max_export_rows: default_max_export_rows(),
            export_chunk_rows: default_export_chunk_rows(),
            cors: None,
            compression: Default::default(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_shutdown() -> Duration {
    Duration::from_secs(10)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_filter_terms() -> usize {
    32
}

fn default_max_bound_parameters() -> usize {
    500
}

fn default_max_export_rows() -> u64 {
    1_000_000
}

fn default_export_chunk_rows() -> usize {
    1_000
}

/// The response cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory bound, e.g. `64MiB` (KiB, MiB, GiB, or bytes).
    #[serde(
        default = "default_cache_size",
        deserialize_with = "super::units::size"
    )]
    pub max_size: u64,
    /// TTL of resources that set none; `0s` means not cached.
    #[serde(default, deserialize_with = "super::units::duration")]
    pub default_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_size: default_cache_size(),
            default_ttl: Duration::ZERO,
        }
    }
}

fn default_cache_size() -> u64 {
    64 << 20
}

/// The kinds of legacy database connection Portico speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Any database with an ODBC driver, through the system unixODBC.
    Odbc,
    /// SQL Server, natively over TDS (tiberius), without an ODBC driver.
    Mssql,
}

/// SQL dialects Portico generates.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DialectName {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
    /// SQL Server 2008 and later (T-SQL).
    Tsql,
    /// Any other ODBC database: only standard SQL, no LIMIT clause.
    Generic,
}

/// One legacy database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// How Portico reaches it.
    pub kind: SourceKind,
    /// ODBC connection string, or for `mssql` an ADO.NET one
    /// (`server=tcp:host,1433;database=ERP;user id=api;password=${ERP_PASSWORD}`);
    /// `${VAR}` pulls secrets from the environment.
    #[serde(default)]
    pub connection_string: String,
    /// The SQL dialect to generate; `mssql` sources always speak T-SQL.
    pub dialect: Option<DialectName>,
    /// `mssql` without a connection string: the server's host name or address.
    pub host: Option<String>,
    /// `mssql`: TCP port (1433 by default).
    pub port: Option<u16>,
    /// `mssql`: named instance, resolved through the SQL Browser.
    pub instance: Option<String>,
    /// `mssql`: database to use.
    pub database: Option<String>,
    /// `mssql`: SQL Server login.
    pub user: Option<String>,
    /// `mssql`: its password (`${ERP_PASSWORD}`).
    pub password: Option<String>,
    /// `mssql`: TLS mode; `required` by default.
    pub encrypt: Option<EncryptMode>,
    /// `mssql`: accept the server's certificate without checking it (self-signed legacy servers).
    #[serde(default)]
    pub trust_server_certificate: bool,
    /// `mssql`: isolation of reads, so reporting never blocks the production application.
    #[serde(default)]
    pub isolation: Isolation,
    /// Queries (and connections) in flight at once; more wait up to `queue_timeout`.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// How long a request may wait for a free slot before it is answered 503.
    #[serde(
        default = "default_queue_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub queue_timeout: Duration,
    /// How long one query may run.
    #[serde(
        default = "default_query_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub query_timeout: Duration,
    /// How long connecting may take.
    #[serde(
        default = "default_login_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub login_timeout: Duration,
    /// Upper bound, in bytes, for one text value read from the database.
    #[serde(default = "default_max_text")]
    pub max_text_bytes: usize,
    /// ODBC: the statement that proves the database answers (readiness, `check`, a pooled
    /// connection before a write), for a driver that refuses `SELECT 1`.
    pub health_statement: Option<String>,
    /// ODBC: what the driver does right or wrong, declared; declared values win over probing.
    #[serde(default)]
    pub capabilities: super::CapabilitiesConfig,
    /// ODBC: probe the capabilities not declared, once at start, on the first table a
    /// resource of this source reads; on by default for the `generic` dialect only.
    pub probe: Option<bool>,
    /// ODBC: serve every table resource of this source from an in-memory snapshot.
    pub snapshot: Option<super::SnapshotConfig>,
    /// When Portico stops sending statements to this database while it struggles.
    #[serde(default)]
    pub breaker: super::BreakerConfig,
}

impl SourceConfig {
    /// The `mssql` connection fields that stand in for a connection string, and which are set.
    pub fn connection_fields(&self) -> [(&'static str, bool); 6] {
        [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("instance", self.instance.is_some()),
            ("database", self.database.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
        ]
    }

    /// The dialect Portico generates for this source.
    pub fn dialect_name(&self) -> DialectName {
        match self.kind {
            SourceKind::Mssql => DialectName::Tsql,
            SourceKind::Odbc => self.dialect.unwrap_or(DialectName::Generic),
        }
    }
}

/// TLS on a SQL Server connection.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EncryptMode {
    /// Everything encrypted; refused when the server cannot.
    Required,
    /// Everything encrypted when the server supports it.
    On,
    /// Only the login is encrypted (a TLS handshake still happens).
    Off,
    /// No TLS at all, for old servers on a trusted network.
    None,
}

/// Transaction isolation of reads on a SQL Server source.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// SQL Server's default: reads wait for writers' locks.
    #[default]
    ReadCommitted,
    /// Row versions: never blocks, needs `ALLOW_SNAPSHOT_ISOLATION ON`.
    Snapshot,
    /// Dirty reads: never blocks, may see uncommitted rows.
    ReadUncommitted,
}

fn default_concurrency() -> usize {
    8
}
fn default_queue_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_text() -> usize {
    8192
}

/// One API version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    /// Human description of the version.
    #[serde(default)]
    pub description: Option<String>,
    /// Date (`YYYY-MM-DD`) the version was deprecated: responses carry `Deprecation`.
    pub deprecated: Option<String>,
    /// Date (`YYYY-MM-DD`) the version goes away: responses carry `Sunset`.
    pub sunset: Option<String>,
    /// Resources served under `/{version}/{name}`.
    #[serde(default)]
    pub resources: IndexMap<String, ResourceConfig>,
    /// Stored procedures served as `POST /{version}/procedures/{name}`.
    #[serde(default)]
    pub procedures: IndexMap<String, super::ProcedureConfig>,
}

/// One REST resource backed by a legacy table, view or read-only query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Name of the source in `[sources]`.
    pub source: String,
    /// Table or view, optionally schema-qualified (`dbo.JOBS`).
    pub table: Option<String>,
    /// A read-only SELECT used instead of a table.
    pub query: Option<String>,
    /// Human description.
    #[serde(default)]
    pub description: Option<String>,
    /// API field names that identify a row, in URL order.
    pub key: Vec<String>,
    /// Default sort, e.g. `["-due_date", "id"]`; the key otherwise.
    #[serde(default)]
    pub default_sort: Vec<String>,
    /// Page size when the client gives no `limit`.
    #[serde(default = "default_limit")]
    pub default_limit: usize,
    /// Largest `limit` a client may ask for.
    #[serde(default = "default_max_limit")]
    pub max_limit: usize,
    /// Most rows one export of this resource streams; `[server] max_export_rows` when absent.
    pub max_export_rows: Option<u64>,
    /// How long responses are cached (`0s`: not cached); `[cache].default_ttl` when absent.
    #[serde(default, deserialize_with = "super::units::optional_duration")]
    pub cache_ttl: Option<Duration>,
    /// How long past its TTL a cached response may be served while the source fails.
    #[serde(default, deserialize_with = "super::units::optional_duration")]
    pub stale_if_error: Option<Duration>,
    /// Serve this resource nested under a row of another one.
    pub parent: Option<ParentConfig>,
    /// Calls without a token are served (row policies and field masks still apply).
    #[serde(default)]
    pub anonymous: bool,
    /// Scope a token needs to read; any valid token when absent.
    pub read_scope: Option<String>,
    /// Scope a token needs to write.
    pub write_scope: Option<String>,
    /// Row filters from token claims, all of those that apply are added to every query.
    #[serde(default)]
    pub row_policies: Vec<RowPolicyConfig>,
    /// Write operations clients may send (`["create", "update", "delete"]`); none by default.
    #[serde(default)]
    pub writes: Vec<WriteOp>,
    /// `PATCH` and `DELETE` without `If-Match` are refused (428).
    #[serde(default)]
    pub require_if_match: bool,
    /// Columns the API does not expose, set by Portico on write: column → value.
    #[serde(default)]
    pub write_values: IndexMap<String, WriteValueConfig>,
    /// How changes to the table are noticed; resources of other versions over the same
    /// table share the feed.
    pub changes: Option<ChangesConfig>,
    /// `GET /{v}/{resource}/aggregate` is served (grouped counts, sums, min and max); `false`
    /// gives the path back to a row whose key is `aggregate`.
    #[serde(default = "default_true")]
    pub aggregates: bool,
    /// Fields in response order: API name → column and transform.
    pub fields: IndexMap<String, FieldConfig>,
    /// Related rows a client may ask for with `?expand=NAME`: relation name → its link.
    #[serde(default)]
    pub relations: IndexMap<String, RelationConfig>,
}

/// A link to rows of another resource of the same version, served by `?expand=`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationConfig {
    /// The related resource, in the same version.
    pub resource: String,
    /// To-one: this resource's field holding the related row's key. To-many: the related
    /// resource's field holding this resource's key (its `parent` link when absent).
    pub field: Option<String>,
    /// Several related rows per row (to-many) instead of at most one.
    #[serde(default)]
    pub many: bool,
    /// To-many: most related rows served per row (100 by default, at most the related
    /// resource's `max_limit`).
    pub limit: Option<usize>,
}

fn default_true() -> bool {
    true
}

fn default_limit() -> usize {
    50
}
fn default_max_limit() -> usize {
    500
}

/// Nesting: `/{v}/{parent}/{key}/{this}` lists this resource's rows of one parent row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    /// The parent resource, in the same version.
    pub resource: String,
    /// This resource's field that holds the parent's key.
    pub field: String,
    /// The parent's row policies apply to this resource on every path (a row is seen only
    /// when its parent row is); `false` says this resource's own policies are enough.
    #[serde(default = "yes")]
    pub inherit_policies: bool,
}

/// API types of fields.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// JSON string.
    String,
    /// JSON integer.
    Integer,
    /// JSON number (binary floating point).
    Number,
    /// Exact decimal, served as a JSON string so no digit is lost.
    Decimal,
    /// JSON boolean.
    Boolean,
    /// ISO 8601 date (`2024-03-01`).
    Date,
    /// ISO 8601 date and time (`2024-03-01T12:30:00`).
    Datetime,
    /// An exact amount with its currency: `{"value": "12.50", "currency": "USD"}`.
    Money,
}

/// How a date is stored in the legacy column.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DateFormat {
    /// A real DATE column (or ISO text).
    Iso,
    /// `YYYYMMDD` as CHAR(8) or as an integer.
    Yyyymmdd,
    /// AS/400 `CYYMMDD`: century digit (0 = 19xx, 1 = 20xx), as an integer.
    Cyymmdd,
    /// `MM/DD/YYYY` text.
    #[serde(rename = "mm/dd/yyyy")]
    MmDdYyyy,
}

/// One field of a resource.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// Legacy column name, exactly as the database catalog spells it.
    pub column: String,
    /// API type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Legacy column type, e.g. `char(8)`, `varchar`, `integer`, `decimal`, `date`;
    /// inferred from the API type and format when absent.
    pub column_type: Option<String>,
    /// Human description.
    #[serde(default)]
    pub description: Option<String>,
    /// Trim trailing blanks (CHAR padding); on by default for `char(n)` columns.
    pub trim: Option<bool>,
    /// Legacy code page of the column's bytes, e.g. `windows-1252`.
    pub encoding: Option<String>,
    /// Legacy values that mean null (`"00000000"`, `""`), compared after trimming.
    #[serde(default)]
    pub null_values: Vec<String>,
    /// Legacy code → API value (`O = "open"`).
    #[serde(default)]
    pub codes: IndexMap<String, String>,
    /// Date storage format for `date` fields.
    pub format: Option<DateFormat>,
    /// Legacy values meaning true / false for `boolean` fields stored as text.
    pub true_value: Option<String>,
    /// See `true_value`.
    pub false_value: Option<String>,
    /// Decimal places to show for `decimal` and `money` fields (pads, never rounds).
    pub scale: Option<u32>,
    /// ISO 4217 currency of a `money` field (`USD`).
    pub currency: Option<String>,
    /// Whether clients may filter on it (default true).
    #[serde(default = "yes")]
    pub filterable: bool,
    /// Whether clients may sort on it (default: when its transform preserves order).
    pub sortable: Option<bool>,
    /// Hidden (absent from responses, unknown to queries) for principals without this scope.
    pub requires_scope: Option<String>,
    /// Written only by principals with this scope (besides the resource's `write_scope`);
    /// others get a 422 at the field.
    pub write_scope: Option<String>,
    /// Never written by clients (generated keys, audit columns).
    #[serde(default)]
    pub read_only: bool,
    /// Must be given on create.
    #[serde(default)]
    pub required: bool,
    /// Whether the column takes NULL; read from the database's catalog when absent.
    pub nullable: Option<bool>,
    /// Text may hold control characters (U+0001–U+001F, U+007F–U+009F); refused by default, since
    /// the old programs' screens and files break on them.
    #[serde(default)]
    pub allow_control: bool,
}

fn yes() -> bool {
    true
}
