//! The listener and one task per connection: handshake, then one request at a time.

use super::{column, lock, request, wire, Cell, Reply, ResultSet, Shared, SqlType};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Whether the fixture answers this SQL itself (version probe, pool liveness check).
pub(super) fn automatic(version: &str, sql: &str) -> Option<ResultSet> {
    if sql.contains("SERVERPROPERTY('ProductVersion')") {
        return Some(ResultSet {
            columns: vec![column(&version_alias(sql), SqlType::NVarChar(128))],
            rows: vec![vec![Cell::Text(version.to_string())]],
        });
    }
    if sql.trim() == "SELECT 1" {
        return Some(ResultSet {
            columns: vec![column("", SqlType::Int)],
            rows: vec![vec![Cell::Int(1)]],
        });
    }
    None
}

/// The alias after the version expression ("... AS [version]"), skipping CAST's "AS nvarchar".
fn version_alias(sql: &str) -> String {
    let at = sql.find("SERVERPROPERTY('ProductVersion')").unwrap_or(0);
    let mut words = sql[at..].split(|c: char| c.is_whitespace() || c == ',' || c == ')');
    while let Some(word) = words.next() {
        if !word.eq_ignore_ascii_case("AS") {
            continue;
        }
        let Some(next) = words.by_ref().find(|w| !w.is_empty()) else {
            break;
        };
        let lower = next.to_ascii_lowercase();
        let is_type = [
            "nvarchar",
            "varchar",
            "nchar",
            "char",
            "sysname",
            "sql_variant",
        ]
        .iter()
        .any(|t| lower.starts_with(t));
        if !is_type {
            return next
                .trim_matches(|c| matches!(c, '[' | ']' | '"' | '\'' | ';'))
                .to_string();
        }
    }
    String::new()
}

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let kill = shared.kill.subscribe();
                tokio::spawn(serve(stream, shared.clone(), kill));
            }
            Err(e) => {
                eprintln!("tds fixture: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>, mut kill: watch::Receiver<u64>) {
    if let Err(e) = converse(&mut stream, &shared, &mut kill).await {
        eprintln!("tds fixture: closing a connection: {e}");
    }
}

/// One connection, one message at a time; Ok when the client, a kill or a Hangup ends it.
async fn converse(
    stream: &mut TcpStream,
    shared: &Shared,
    kill: &mut watch::Receiver<u64>,
) -> Result<(), String> {
    let spid = 51 + (stream.peer_addr().map(|a| a.port()).unwrap_or(0) % 1000);
    let mut packet_size = 4096usize;
    loop {
        let message = tokio::select! {
            // Biased: a kill wins over a request that arrived at the same time.
            biased;
            _ = kill.changed() => return Ok(()),
            message = wire::read_message(stream) => message?,
        };
        let Some(message) = message else {
            return Ok(());
        };
        let reply = match message.ty {
            wire::PRELOGIN => {
                let encryption = wire::prelogin_encryption(&message.payload);
                if encryption.is_some_and(|e| e != 2) {
                    eprintln!(
                        "tds fixture: the client asked for encryption ({encryption:?}); only \
                         encrypt=DANGER_PLAINTEXT is supported"
                    );
                }
                wire::prelogin_reply(&shared.version)
            }
            wire::LOGIN7 => {
                let login = request::parse_login(&message.payload)?;
                let size = login.packet_size as usize;
                let negotiated = if (512..=32767).contains(&size) {
                    size
                } else {
                    4096
                };
                let database = match login.login.database.as_str() {
                    "" => "master".to_string(),
                    name => name.to_string(),
                };
                lock(&shared.logins).push(login.login);
                let reply = wire::login_reply(&shared.version, &database, negotiated as u32);
                // The login answer still travels at the pre-login size.
                write(stream, &reply, packet_size, spid).await?;
                packet_size = negotiated;
                continue;
            }
            wire::SQL_BATCH | wire::RPC => {
                let rpc = message.ty == wire::RPC;
                let request = if rpc {
                    request::parse_rpc(&message.payload)?
                } else {
                    request::parse_batch(&message.payload)?
                };
                lock(&shared.requests).push(request.clone());
                let mut reply = match automatic(&shared.version, request.sql()) {
                    Some(set) => Reply::Rows(vec![set]),
                    None => (shared.handler)(&request),
                };
                while let Reply::Delayed(pause, later) = reply {
                    tokio::time::sleep(pause).await;
                    reply = *later;
                }
                match wire::encode_reply(&reply, rpc) {
                    Some(tokens) => tokens,
                    None => return Ok(()),
                }
            }
            wire::ATTENTION => {
                // Every request is answered in full before the next read, so only the
                // acknowledgement is left to send.
                let mut done = Vec::new();
                wire::put_done(&mut done, 0xFD, wire::DONE_ATTN, 0, 0);
                done
            }
            other => return Err(format!("packet type {other:#04x} is not supported")),
        };
        write(stream, &reply, packet_size, spid).await?;
    }
}

async fn write(
    stream: &mut TcpStream,
    tokens: &[u8],
    size: usize,
    spid: u16,
) -> Result<(), String> {
    wire::write_message(stream, tokens, size, spid)
        .await
        .map_err(|e| format!("writing a reply: {e}"))
}
