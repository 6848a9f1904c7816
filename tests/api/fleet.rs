//! Portico as a fleet: three `portico serve` processes over one PostgreSQL state store and one
//! legacy database (PostgreSQL), as behind a load balancer. Each test starts its own state
//! database and replicas and talks to each replica directly, so it can say which one answered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth::hs_token;
use crate::changes::{has, Receiver, SECRET};
use crate::harness::{
    create_postgres_database, execute, query_text, shared_server, Portico, Served,
};
use crate::idp::{AUDIENCE, ISSUER};
use crate::servers::{DbServer, Engine};

mod review;

/// The legacy tables: `items` (key given by the client, feeds watch it), `notes` (key
/// generated: a write made twice would show), `parts` and `tools` (more feeds).
const LEGACY_SCHEMA: [&str; 4] = [
    "CREATE TABLE items (id VARCHAR(8) PRIMARY KEY, label VARCHAR(40) NOT NULL, \
     version INTEGER NOT NULL DEFAULT 1, updated TIMESTAMP NOT NULL DEFAULT now())",
    "CREATE TABLE notes (note_id SERIAL PRIMARY KEY, body VARCHAR(200) NOT NULL)",
    "CREATE TABLE parts (id VARCHAR(8) PRIMARY KEY, updated TIMESTAMP NOT NULL DEFAULT now())",
    "CREATE TABLE tools (id VARCHAR(8) PRIMARY KEY, updated TIMESTAMP NOT NULL DEFAULT now())",
];

/// Short leases and intervals, so a takeover is seen within seconds.
const FEED: &str =
    r#"{ strategy = "high_water_mark", column = "updated", poll_interval = "200ms", lag = "5s" }"#;

/// Statements sent to the legacy database, as each replica counts them.
const SOURCE_QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

/// `[webhooks] max_in_flight_per_subscription`.
const IN_FLIGHT: usize = 16;

/// What the tests' configurations differ in.
#[derive(Default)]
struct Setup {
    /// A change feed on `items` (the others watch nothing: only a write or a purge
    /// invalidates their cached answers).
    feed: bool,
    /// Feeds on `parts` and `tools` as well.
    more_feeds: bool,
    /// Configured subscriptions (`[subscriptions.NAME]`, to the URL) to `items.*`.
    subscriptions: Vec<(&'static str, String)>,
    /// Appended to the file (`[rate_limit]`).
    tail: &'static str,
    /// `[state] feed_lease` when not the tests' 2 s.
    feed_lease: Option<&'static str>,
}

impl Setup {
    fn config(&self, legacy: &str, state_url: &str) -> String {
        let feed_lease = self.feed_lease.unwrap_or("2s");
        let changes = |feed: bool| {
            if feed {
                format!("changes = {FEED}")
            } else {
                String::new()
            }
        };
        let mut text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
algorithm = "HS256"
secret = "{secret}"

[state]
url = "{state_url}"
replica = "${{PORTICO_REPLICA}}"
pool_size = 4
feed_lease = "{feed_lease}"
delivery_lease = "3s"
idempotency_lease = "3s"

[sources.legacy]
kind = "odbc"
dialect = "postgres"
connection_string = "{legacy}"

[webhooks]
retry_schedule = ["0s", "500ms", "1s", "2s", "4s", "8s"]
jitter = 0.0
allow_private = ["127.0.0.1"]
dispatch_interval = "100ms"
timeout = "2s"
max_in_flight_per_subscription = {IN_FLIGHT}

[versions.v1.resources.items]
source = "legacy"
table = "items"
key = ["id"]
anonymous = true
write_scope = "items:write"
writes = ["create", "update"]
cache_ttl = "60s"
{items_changes}

[versions.v1.resources.items.fields]
id = {{ column = "id", type = "string", column_type = "varchar(8)" }}
label = {{ column = "label", type = "string", column_type = "varchar(40)", required = true }}
version = {{ column = "version", type = "integer", read_only = true }}
updated_at = {{ column = "updated", type = "datetime", read_only = true }}

[versions.v1.resources.notes]
source = "legacy"
table = "notes"
key = ["id"]
anonymous = true
write_scope = "items:write"
writes = ["create"]

[versions.v1.resources.notes.fields]
id = {{ column = "note_id", type = "integer", read_only = true }}
body = {{ column = "body", type = "string", column_type = "varchar(200)", required = true }}
"#,
            secret = crate::auth::SECRET,
            items_changes = changes(self.feed),
        );
        if self.more_feeds {
            for table in ["parts", "tools"] {
                text.push_str(&format!(
                    r#"
[versions.v1.resources.{table}]
source = "legacy"
table = "{table}"
key = ["id"]
anonymous = true
{changes}

[versions.v1.resources.{table}.fields]
id = {{ column = "id", type = "string", column_type = "varchar(8)" }}
updated_at = {{ column = "updated", type = "datetime" }}
"#,
                    changes = changes(true),
                ));
            }
        }
        for (name, url) in &self.subscriptions {
            text.push_str(&format!(
                "\n[subscriptions.{name}]\nurl = \"{url}\"\nversion = \"v1\"\n\
                 events = [\"items.*\"]\nsecret = \"{SECRET}\"\n"
            ));
        }
        text.push_str(self.tail);
        text
    }
}

/// One `portico serve` process and a client for it.
struct Replica {
    name: String,
    process: Served,
    app: Portico,
}

/// The replicas, their shared state database and the legacy database they read.
struct Fleet {
    replicas: Vec<Replica>,
    /// ODBC connection string of the legacy database.
    legacy: String,
    /// ODBC connection string of the state database (to look at it from outside).
    state: String,
    config: PathBuf,
    started: usize,
    dir: tempfile::TempDir,
}

/// PATCHes item `id`'s label through `app`, as a clerk.
async fn relabel(app: &Portico, id: &str, label: &str) -> crate::harness::Answer {
    app.send(
        Method::PATCH,
        &format!("/v1/items/{id}"),
        Some(&clerk()),
        &[],
        Some(Err((
            "application/merge-patch+json",
            json!({ "label": label }).to_string().into_bytes(),
        ))),
    )
    .await
}

/// A legacy database with the tests' tables on `server`; its ODBC connection string.
fn legacy_database(server: &DbServer) -> String {
    let (legacy, _) = create_postgres_database(server);
    for statement in LEGACY_SCHEMA {
        execute(&legacy, statement);
    }
    legacy
}

impl Fleet {
    /// Three replicas (`a`, `b`, `c`), started together as a deployment starts them.
    async fn start(setup: Setup) -> Self {
        let server = shared_server(Engine::Postgres);
        let legacy = legacy_database(server);
        let (state, state_url) = create_postgres_database(server);
        let text = setup.config(&legacy, &state_url);
        Self::of(3, &text, legacy, state).await
    }

    /// `replicas` replicas started together over configuration `text`, the legacy database
    /// `legacy` and the state database `state` (ODBC connection strings).
    async fn of(replicas: usize, text: &str, legacy: String, state: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portico.toml");
        std::fs::write(&config, text).unwrap();
        let mut fleet = Self {
            replicas: Vec::new(),
            legacy,
            state,
            config,
            started: 0,
            dir,
        };
        let spawned: Vec<(String, Served)> = (0..replicas).map(|_| fleet.spawn()).collect();
        for (name, process) in spawned {
            fleet.attach(name, process).await;
        }
        fleet
    }

    fn spawn(&mut self) -> (String, Served) {
        let name = ((b'a' + self.started as u8) as char).to_string();
        self.started += 1;
        let log = self.dir.path().join(format!("{name}.log"));
        let process = Served::spawn(&self.config, &[("PORTICO_REPLICA", &name)], &log);
        (name, process)
    }

    async fn attach(&mut self, name: String, mut process: Served) {
        let address = process.address().await;
        let app = Portico::attach(&address);
        let deadline = Instant::now() + Duration::from_secs(30);
        while app.get_with("/readyz", &[]).await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "replica {name} not ready:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.replicas.push(Replica { name, process, app });
    }

    /// Starts one more replica (the next letter) and waits until it is ready.
    async fn add(&mut self) -> usize {
        let (name, process) = self.spawn();
        self.attach(name, process).await;
        self.replicas.len() - 1
    }

    /// SIGKILLs replica `index` and forgets it; its name.
    fn kill(&mut self, index: usize) -> String {
        let mut replica = self.replicas.remove(index);
        replica.process.kill();
        replica.name
    }

    fn app(&self, index: usize) -> &Portico {
        &self.replicas[index].app
    }

    /// The feeds each replica says it leads (`portico_feed_leader{feed="…"} 1`); a replica
    /// that does not answer leads none.
    async fn leaders(&self) -> Vec<BTreeSet<String>> {
        let mut led = Vec::new();
        for replica in &self.replicas {
            let text = match reqwest::get(format!("{}/metrics", replica.app.base)).await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            led.push(
                text.lines()
                    .filter_map(|line| line.strip_prefix("portico_feed_leader{feed=\""))
                    .filter_map(|rest| rest.split_once("\"} "))
                    .filter(|(_, value)| value.trim() == "1")
                    .map(|(feed, _)| feed.to_string())
                    .collect(),
            );
        }
        led
    }

    /// Waits until exactly one replica leads the feed whose name contains `feed`; its index.
    async fn leader_of(&self, feed: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leaders = self.leaders().await;
            let holding: Vec<usize> = (0..leaders.len())
                .filter(|&i| leaders[i].iter().any(|f| f.contains(feed)))
                .collect();
            if let [one] = holding[..] {
                return one;
            }
            assert!(
                Instant::now() < deadline,
                "no single leader of {feed}: {:?}",
                self.named(&leaders)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn named<T: std::fmt::Debug>(&self, values: &[T]) -> Vec<String> {
        self.replicas
            .iter()
            .zip(values)
            .map(|(r, v)| format!("{}: {v:?}", r.name))
            .collect()
    }

    /// The logs of every replica, for a failure message.
    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(|r| format!("--- {} ---\n{}", r.name, r.process.log()))
            .collect()
    }

    fn count(&self, sql: &str) -> usize {
        query_text(&self.legacy, sql)[0][0]
            .as_deref()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

fn clerk() -> String {
    hs_token("clerk", json!({"scope": "items:write"}))
}

fn operator() -> String {
    hs_token("operator", json!({"scope": "portico:admin"}))
}

/// Waits until `done` holds for `what`, polling every 20 ms; panics after `seconds`.
async fn eventually<F, Fut>(what: &str, seconds: u64, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `done` holds for the receiver's log and returns it; on timeout, says how much
/// had arrived (not the whole log: thousands of entries).
async fn receive(
    receiver: &Receiver,
    what: &str,
    seconds: u64,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let entries = receiver.entries();
        if done(&entries) {
            return entries;
        }
        let accepted = entries
            .iter()
            .filter(|e| e["outcome"] == "accepted")
            .count();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {} requests, {accepted} accepted",
            entries.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(key, version)` of an accepted delivery of `items`, and its `webhook-id`.
fn item_event(entry: &Value) -> Option<((String, i64), String)> {
    let body = &entry["body"];
    let key = body["data"]["key"].as_str()?.to_string();
    let version = body["data"]["row"]["version"].as_i64()?;
    Some(((key, version), entry["id"].as_str()?.to_string()))
}

/// How many distinct events (`webhook-id`) the receiver accepted whose key starts with
/// `prefix` and whose row has `version`.
fn delivered(entries: &[Value], prefix: &str, version: i64) -> usize {
    entries
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .filter_map(item_event)
        .filter(|((key, v), _)| key.starts_with(prefix) && *v == version)
        .map(|(_, id)| id)
        .collect::<BTreeSet<_>>()
        .len()
}

/// 5,000 row changes made directly in the legacy database, in four bursts, while the feed's
/// leader is SIGKILLed twice (a replacement replica is started each time, so three keep
/// running): every change arrives at the receiver, whose `standardwebhooks` library verifies
/// each signature; a change that arrives twice carries one `webhook-id` both times.
#[tokio::test]
async fn every_change_is_delivered_once_while_leaders_are_killed() {
    let receiver = Receiver::start(&[]);
    let mut fleet = Fleet::start(Setup {
        feed: true,
        subscriptions: vec![("bulk", receiver.url.clone())],
        ..Setup::default()
    })
    .await;
    let legacy = fleet.legacy.clone();
    let burst = |sql: String| execute(&legacy, &sql);
    let insert = |prefix: &str, rows: usize| {
        format!(
            "INSERT INTO items (id, label) SELECT '{prefix}' || lpad(i::text, 5, '0'), 'new' \
             FROM generate_series(1, {rows}) AS i"
        )
    };
    let update = |prefix: &str, rows: usize| {
        format!(
            "UPDATE items SET label = 'changed', version = 2, updated = now() \
             WHERE id BETWEEN '{prefix}00001' AND '{prefix}{rows:05}'"
        )
    };
    let mut killed = Vec::new();

    // A row changed twice before the leader polls is one event: an update waits until its
    // row's creation is delivered (so committed).
    let first = fleet.leader_of("items").await;
    burst(insert("A", 1500));
    receive(&receiver, "the first deliveries", 60, |e| {
        delivered(e, "A", 1) >= 100
    })
    .await;
    let seen = receiver.accepted().len();
    killed.push(format!("{} after {seen} deliveries", fleet.kill(first)));
    fleet.add().await;
    burst(insert("B", 1500));
    receive(&receiver, "every A created", 90, |e| {
        delivered(e, "A", 1) == 1500
    })
    .await;
    burst(update("A", 1000));
    receive(&receiver, "the first A updates", 60, |e| {
        delivered(e, "A", 2) >= 100
    })
    .await;
    let second = fleet.leader_of("items").await;
    let seen = receiver.accepted().len();
    killed.push(format!("{} after {seen} deliveries", fleet.kill(second)));
    fleet.add().await;
    receive(&receiver, "every B created", 90, |e| {
        delivered(e, "B", 1) == 1500
    })
    .await;
    burst(update("B", 1000));
    let entries = receive(&receiver, "all 5,000 changes", 120, |e| {
        delivered(e, "A", 1) + delivered(e, "B", 1) + delivered(e, "A", 2) + delivered(e, "B", 2)
            >= 5000
    })
    .await;

    let mut ids: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut accepted = 0;
    for entry in &entries {
        assert_eq!(entry["outcome"], "accepted", "{entry}");
        accepted += 1;
        let (change, id) = item_event(entry).unwrap_or_else(|| panic!("not an item: {entry}"));
        let kind = if change.1 == 1 { "created" } else { "updated" };
        assert_eq!(entry["body"]["type"], format!("items.{kind}"), "{entry}");
        ids.entry(change).or_default().insert(id);
    }
    let expected: BTreeSet<(String, i64)> = [
        ("A", 1500, 1),
        ("B", 1500, 1),
        ("A", 1000, 2),
        ("B", 1000, 2),
    ]
    .iter()
    .flat_map(|&(prefix, rows, version)| {
        (1..=rows).map(move |i| (format!("{prefix}{i:05}"), version))
    })
    .collect();
    assert_eq!(expected.len(), 5000);
    let got: BTreeSet<(String, i64)> = ids.keys().cloned().collect();
    assert_eq!(
        got.symmetric_difference(&expected)
            .take(10)
            .collect::<Vec<_>>(),
        Vec::<&(String, i64)>::new(),
        "every change, and nothing else"
    );
    let doubled: Vec<_> = ids
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .take(5)
        .collect();
    assert!(doubled.is_empty(), "a change announced twice: {doubled:?}");
    let distinct = ids.values().map(BTreeSet::len).sum::<usize>();
    // Only what a killed replica had in flight is sent again: at most the per-subscription
    // limit (counted across the fleet, approximately: each replica's share at worst).
    assert!(
        accepted - distinct <= killed.len() * 3 * IN_FLIGHT,
        "{} redeliveries: claimed deliveries were sent by more than one replica",
        accepted - distinct
    );
    eprintln!(
        "fleet: 5000 changes, {distinct} distinct events delivered, {} redeliveries \
         (same webhook-id) in {accepted} accepted POSTs; leaders killed: {killed:?}",
        accepted - distinct
    );
}

/// A write through one replica invalidates the cached answer another replica holds (60 s
/// TTL, no feed watching the table: only the write's notice can).
#[tokio::test]
async fn a_write_on_one_replica_is_read_fresh_on_another_within_a_second() {
    let fleet = Fleet::start(Setup::default()).await;
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('W1', 'before')",
    );
    let (a, b) = (fleet.app(0), fleet.app(1));
    assert_eq!(b.get("/v1/items/W1").await.body["label"], "before");
    let hits = b.metric("portico_cache_hits_total").await;
    assert_eq!(b.get("/v1/items/W1").await.body["label"], "before");
    assert_eq!(
        b.metric("portico_cache_hits_total").await,
        hits + 1.0,
        "B answers from its cache"
    );

    let written = relabel(a, "W1", "after").await;
    assert_eq!(written.status, 200, "{}", written.body);
    let answered = Instant::now();
    let fresh = loop {
        if b.get("/v1/items/W1").await.body["label"] == "after" {
            break answered.elapsed();
        }
        assert!(
            answered.elapsed() < Duration::from_secs(10),
            "B still serves the old value 10 s after the write\n{}",
            fleet.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("fleet: B read the write made on A fresh after {fresh:?}");
    assert!(
        fresh < Duration::from_secs(1),
        "B read it fresh after {fresh:?}"
    );
}

/// A POST with an `Idempotency-Key` retried on another replica gets the first answer
/// replayed; the same key sent to every replica at once writes one row.
#[tokio::test]
async fn an_idempotent_post_retried_on_another_replica_is_replayed() {
    let fleet = Fleet::start(Setup::default()).await;
    let clerk = clerk();
    let post = |index: usize, key: &'static str, body: &'static str| {
        let (app, clerk) = (fleet.app(index), &clerk);
        async move {
            app.send(
                Method::POST,
                "/v1/notes",
                Some(clerk),
                &[("idempotency-key", key)],
                Some(Ok(json!({ "body": body }))),
            )
            .await
        }
    };
    let first = post(0, "fleet-order-1", "exactly once").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let retry = post(1, "fleet-order-1", "exactly once").await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["location"], first.headers["location"]);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(fleet.count("SELECT COUNT(*) FROM notes"), 1);

    // The same key to all three at once: one writes, the others wait or are told it is in
    // flight; a retry afterwards anywhere gets the one answer.
    let raced =
        futures_util::future::join_all((0..3).map(|i| post(i, "fleet-order-2", "raced"))).await;
    for answer in &raced {
        assert!(
            matches!(answer.status.as_u16(), 201 | 409),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
    let created: Vec<_> = raced.iter().filter(|a| a.status == 201).collect();
    assert!(!created.is_empty(), "one of them wrote");
    assert_eq!(
        fleet.count("SELECT COUNT(*) FROM notes WHERE body = 'raced'"),
        1,
        "one row whichever replica wrote it"
    );
    for index in 0..3 {
        let replay = post(index, "fleet-order-2", "raced").await;
        assert_eq!(replay.status, 201);
        assert_eq!(replay.body, created[0].body);
        assert_eq!(replay.headers["location"], created[0].headers["location"]);
    }
    assert_eq!(fleet.count("SELECT COUNT(*) FROM notes"), 2);
}

/// A subscription created through the admin API of one replica is listed by the others and
/// its events are delivered; deleted through another, it gets no more. Neither is made on
/// the feed's leader, which is the replica that must learn of them to make (or not make) the
/// deliveries. Each replica answers the admin API from the subscriptions it has loaded (the
/// ones its feeds make deliveries for), which a notice from the other replica reloads: the
/// test waits until each shows the change.
#[tokio::test]
async fn subscriptions_changed_on_one_replica_take_effect_on_all() {
    let witness = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let portal = Receiver::start(&["--secret-file", secret_file.to_str().unwrap()]);
    let fleet = Fleet::start(Setup {
        feed: true,
        subscriptions: vec![("witness", witness.url.clone())],
        ..Setup::default()
    })
    .await;
    let leader = fleet.leader_of("items").await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (creator, deleter) = (fleet.app(others[0]), fleet.app(others[1]));
    let admin = operator();
    let shown = |index: usize| {
        let admin = &admin;
        let app = fleet.app(index);
        async move {
            let answer = app.get_as("/admin/subscriptions", Some(admin)).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            let names = answer.body["data"].as_array().unwrap().iter();
            names
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };

    let created = creator
        .send(
            Method::POST,
            "/admin/subscriptions",
            Some(&admin),
            &[],
            Some(Ok(
                json!({"name": "portal", "url": portal.url, "version": "v1",
                           "events": ["items.*"]}),
            )),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    std::fs::write(&secret_file, created.body["secret"].as_str().unwrap()).unwrap();
    // The admin API answers from the store: every replica lists it at once.
    for index in 0..3 {
        assert_eq!(shown(index).await, ["portal", "witness"], "replica {index}");
    }
    // One name created on three replicas at once: one wins, the others are told it exists.
    let body = json!({"name": "twice", "url": witness.url, "version": "v1", "events": ["items.*"]});
    let attempts = (0..3).map(|index| {
        let (fleet, admin, body) = (&fleet, &admin, body.clone());
        async move {
            fleet
                .app(index)
                .send(
                    Method::POST,
                    "/admin/subscriptions",
                    Some(admin),
                    &[],
                    Some(Ok(body)),
                )
                .await
                .status
        }
    });
    let mut statuses = futures_util::future::join_all(attempts).await;
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409]);
    let removed = creator
        .send(
            Method::DELETE,
            "/admin/subscriptions/twice",
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let listed = fleet
        .app(leader)
        .get_as("/admin/subscriptions/portal", Some(&admin))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["url"], portal.url.as_str());
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('S1', 'one')",
    );
    portal
        .wait("S1 at the new subscription", 30, |e| {
            has(e, "items.created", "S1")
        })
        .await;

    let deleted = deleter
        .send(
            Method::DELETE,
            "/admin/subscriptions/portal",
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    for index in 0..3 {
        eventually("every replica to drop the subscription", 20, || async {
            shown(index).await == ["witness"]
        })
        .await;
    }
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('S2', 'two')",
    );
    witness
        .wait("S2 at the witness", 30, |e| has(e, "items.created", "S2"))
        .await;
    // The witness's delivery was made with the deleted one's, if any: a little slack.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let entries = portal.entries();
    assert!(
        entries.iter().all(|e| e["outcome"] == "accepted"),
        "{entries:#?}"
    );
    assert!(
        !has(&entries, "items.created", "S2"),
        "a deleted subscription got an event: {entries:#?}"
    );
}

/// A replica whose listening connection is cut may have missed notices: when it listens
/// again it purges its whole cache, so a row changed behind its back is read fresh.
#[tokio::test]
async fn a_replica_that_lost_its_listening_connection_purges_its_cache() {
    let fleet = Fleet::start(Setup::default()).await;
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('R1', 'before')",
    );
    let app = fleet.app(0);
    assert_eq!(app.get("/v1/items/R1").await.body["label"], "before");
    // Changed directly: no notice is sent, and the 60 s TTL keeps the cached answer.
    execute(
        &fleet.legacy,
        "UPDATE items SET label = 'after' WHERE id = 'R1'",
    );
    assert_eq!(
        app.get("/v1/items/R1").await.body["label"],
        "before",
        "served from the cache"
    );
    let resyncs = app.metric("portico_cache_resyncs_total").await;

    let cut = query_text(
        &fleet.state,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    );
    assert_eq!(
        cut.len(),
        3,
        "one listening connection per replica: {cut:?}"
    );
    eventually("the replica to listen again and resync", 30, || async {
        app.metric("portico_cache_resyncs_total").await > resyncs
    })
    .await;
    assert_eq!(
        app.get("/v1/items/R1").await.body["label"],
        "after",
        "the cache was purged"
    );
}

/// Rate limits are kept by each replica in its memory: a principal that spent its burst on
/// one replica is still served by the others (behind a balancer spreading requests, its
/// limit is up to the number of replicas times the configured one).
#[tokio::test]
async fn rate_limits_are_per_replica() {
    let fleet = Fleet::start(Setup {
        // One request every 100 s: the burst does not refill during the test.
        tail: "\n[rate_limit]\nrequests_per_second = 0.01\nburst = 3\n",
        ..Setup::default()
    })
    .await;
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('L1', 'limited')",
    );
    let token = hs_token("busy-client", json!({}));
    let get = |index: usize| fleet.app(index).get_as("/v1/items/L1", Some(&token));
    for _ in 0..3 {
        assert_eq!(get(0).await.status, 200);
    }
    get(0).await.problem(429);
    for index in [1, 2] {
        for _ in 0..3 {
            assert_eq!(
                get(index).await.status,
                200,
                "replica {index} has its own bucket"
            );
        }
        get(index).await.problem(429);
    }
}

/// One poller per feed across the fleet: while the leader polls (its queries to the legacy
/// database count up), the other replicas send that database nothing.
#[tokio::test]
async fn only_the_leader_polls_a_feed() {
    let fleet = Fleet::start(Setup {
        feed: true,
        ..Setup::default()
    })
    .await;
    let leader = fleet.leader_of("items").await;
    let queries = || async {
        let mut counts = Vec::new();
        for index in 0..3 {
            counts.push(fleet.app(index).metric(SOURCE_QUERIES).await);
        }
        counts
    };
    let before = queries().await;
    eventually("the leader to poll five more times", 30, || async {
        fleet.app(leader).metric(SOURCE_QUERIES).await >= before[leader] + 5.0
    })
    .await;
    let after = queries().await;
    for index in (0..3).filter(|&i| i != leader) {
        assert_eq!(
            after[index], before[index],
            "replica {} queried the legacy database while {} leads: {before:?} -> {after:?}",
            fleet.replicas[index].name, fleet.replicas[leader].name
        );
    }
}

/// A replica asked to stop (SIGTERM, as in a rolling upgrade) gives its feed leases up while
/// it drains: another replica polls the feed at once, not a lease's length later.
#[tokio::test]
async fn a_stopping_leader_hands_its_feeds_over_at_once() {
    let fleet = Fleet::start(Setup {
        feed: true,
        feed_lease: Some("60s"),
        ..Setup::default()
    })
    .await;
    let leader = fleet.leader_of("items").await;
    fleet.replicas[leader].process.terminate();
    eventually(
        "another replica to lead the feed well within the 60 s lease",
        20,
        || async {
            let leaders = fleet.leaders().await;
            (0..leaders.len())
                .filter(|&i| i != leader)
                .any(|i| leaders[i].iter().any(|f| f.contains("items")))
        },
    )
    .await;
    assert!(
        fleet.replicas[leader]
            .process
            .log()
            .contains("feed lease given up: this replica is stopping"),
        "{}",
        fleet.logs()
    );
}

/// With three feeds and three replicas, the leases spread: once they settle, each replica
/// leads one feed (a replica that took more before the others were seen gives the extra
/// leases up).
#[tokio::test]
async fn feeds_spread_across_replicas() {
    let fleet = Fleet::start(Setup {
        feed: true,
        more_feeds: true,
        ..Setup::default()
    })
    .await;
    let started = Instant::now();
    loop {
        let leaders = fleet.leaders().await;
        let distinct: BTreeSet<&String> = leaders.iter().flatten().collect();
        if distinct.len() == 3 && leaders.iter().all(|feeds| feeds.len() == 1) {
            eprintln!(
                "fleet: feeds led {:?} after {:?}",
                fleet.named(&leaders),
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the feeds did not spread: {:?}",
            fleet.named(&leaders)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
