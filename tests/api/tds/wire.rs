//! Packets and tokens (MS-TDS 2.2.3, 2.2.7): framing, PRELOGIN/LOGINACK and reply streams.

use super::codepage::{collation_bytes, put_b_varchar, put_us_varchar};
use super::types::{put_cell, put_column_meta};
use super::{Collation, Reply, ResultSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(super) const PRELOGIN: u8 = 0x12;
pub(super) const LOGIN7: u8 = 0x10;
pub(super) const SQL_BATCH: u8 = 0x01;
pub(super) const RPC: u8 = 0x03;
pub(super) const ATTENTION: u8 = 0x06;
const TABULAR_RESULT: u8 = 0x04;
const HEADER: usize = 8;
/// Bigger requests are not something a test sends; refuse rather than buffer without bound.
const MAX_MESSAGE: usize = 64 << 20;

const DONE: u8 = 0xFD;
const DONEPROC: u8 = 0xFE;
const DONEINPROC: u8 = 0xFF;
const DONE_MORE: u16 = 0x01;
const DONE_ERROR: u16 = 0x02;
const DONE_COUNT: u16 = 0x10;
pub(super) const DONE_ATTN: u16 = 0x20;
const CMD_SELECT: u16 = 0xC1;

/// One client message: the type of its first packet and the joined payloads.
pub(super) struct Message {
    pub ty: u8,
    pub payload: Vec<u8>,
}

/// Reads packets up to the one with EOM; Ok(None) when the client closed between messages.
pub(super) async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Message>, String> {
    let mut ty = None;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        if let Err(e) = reader.read_exact(&mut header).await {
            return match (ty, e.kind()) {
                // A client that resets between messages (a killed process) has closed too.
                (None, std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) => {
                    Ok(None)
                }
                _ => Err(format!("reading a packet header: {e}")),
            };
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if len < HEADER {
            return Err(format!("packet length {len} is shorter than its header"));
        }
        if payload.len() + len > MAX_MESSAGE {
            return Err("message over 64 MiB".into());
        }
        let start = payload.len();
        payload.resize(start + len - HEADER, 0);
        reader
            .read_exact(&mut payload[start..])
            .await
            .map_err(|e| format!("reading a packet body: {e}"))?;
        let ty = *ty.get_or_insert(header[0]);
        if header[1] & 0x01 != 0 {
            return Ok(Some(Message { ty, payload }));
        }
    }
}

/// Writes a reply as TABULAR_RESULT packets of at most `packet_size` bytes, EOM on the last.
pub(super) async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
    packet_size: usize,
    spid: u16,
) -> std::io::Result<()> {
    let room = packet_size - HEADER;
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(room).collect()
    };
    let mut wire = Vec::with_capacity(payload.len() + chunks.len() * HEADER);
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        wire.push(TABULAR_RESULT);
        wire.push(last as u8);
        wire.extend_from_slice(&((chunk.len() + HEADER) as u16).to_be_bytes());
        wire.extend_from_slice(&spid.to_be_bytes());
        wire.push((i + 1) as u8); // packet id, wrapping as on a real server
        wire.push(0);
        wire.extend_from_slice(chunk);
    }
    writer.write_all(&wire).await?;
    writer.flush().await
}

/// "10.50.6000.34" as (major, minor, build, sub-build); zeros where unparsable.
pub(super) fn version_parts(version: &str) -> (u8, u8, u16, u16) {
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next() as u8, next() as u8, next() as u16, next() as u16)
}

/// The encryption byte a client put in its PRELOGIN (2 = not supported), if present.
pub(super) fn prelogin_encryption(payload: &[u8]) -> Option<u8> {
    let mut at = 0;
    while at + 5 <= payload.len() && payload[at] != 0xFF {
        if payload[at] == 0x01 {
            let offset = u16::from_be_bytes([payload[at + 1], payload[at + 2]]) as usize;
            return payload.get(offset).copied();
        }
        at += 5;
    }
    None
}

/// PRELOGIN answer: server version, ENCRYPT_NOT_SUP, no instance, no MARS.
pub(super) fn prelogin_reply(version: &str) -> Vec<u8> {
    let (major, minor, build, sub) = version_parts(version);
    let mut data = vec![major, minor];
    data.extend_from_slice(&build.to_be_bytes());
    data.extend_from_slice(&sub.to_be_bytes());
    let options: [(u8, &[u8]); 4] = [
        (0x00, &data),
        (0x01, &[0x02]),
        (0x02, &[0x00]),
        (0x04, &[0x00]),
    ];
    let mut offset = options.len() * 5 + 1;
    let mut out = Vec::new();
    for (token, value) in options {
        out.push(token);
        out.extend_from_slice(&(offset as u16).to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        offset += value.len();
    }
    out.push(0xFF);
    for (_, value) in options {
        out.extend_from_slice(value);
    }
    out
}

/// TDS version a server of this product version answers with (LOGINACK is big-endian).
fn tds_version(major: u8, minor: u8) -> u32 {
    match (major, minor) {
        (0..=9, _) => 0x7209_0002,   // 2005: TDS 7.2
        (10, 0..=49) => 0x730A_0003, // 2008: TDS 7.3A
        (10, _) => 0x730B_0003,      // 2008 R2: TDS 7.3B
        _ => 0x7400_0004,            // 2012 and later: TDS 7.4
    }
}

fn put_envchange(out: &mut Vec<u8>, ty: u8, body: &[u8]) {
    out.push(0xE3);
    out.extend_from_slice(&((body.len() + 1) as u16).to_le_bytes());
    out.push(ty);
    out.extend_from_slice(body);
}

fn put_envchange_strings(out: &mut Vec<u8>, ty: u8, new: &str, old: &str) {
    let mut body = Vec::new();
    // Both values are short server-side strings; an over-long one is truncated by the caller.
    let _ = put_b_varchar(&mut body, new);
    let _ = put_b_varchar(&mut body, old);
    put_envchange(out, ty, &body);
}

/// Answer to LOGIN7: database, collation, LOGINACK, packet size, DONE.
pub(super) fn login_reply(version: &str, database: &str, packet_size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let database: String = database.chars().take(128).collect();
    put_envchange_strings(&mut out, 1, &database, "master");
    let mut collation = vec![5];
    collation.extend_from_slice(&collation_bytes(Collation::Cp1252));
    collation.push(0);
    put_envchange(&mut out, 7, &collation);
    put_envchange_strings(&mut out, 2, "us_english", "");

    let (major, minor, build, _) = version_parts(version);
    let mut ack = vec![1]; // interface: SQL
    ack.extend_from_slice(&tds_version(major, minor).to_be_bytes());
    let _ = put_b_varchar(&mut ack, "Microsoft SQL Server");
    ack.extend_from_slice(&[major, minor]);
    ack.extend_from_slice(&build.to_be_bytes());
    out.push(0xAD);
    out.extend_from_slice(&(ack.len() as u16).to_le_bytes());
    out.extend_from_slice(&ack);

    let size = packet_size.to_string();
    put_envchange_strings(&mut out, 4, &size, "4096");
    put_done(&mut out, DONE, 0, 0, 0);
    out
}

pub(super) fn put_done(out: &mut Vec<u8>, token: u8, status: u16, cmd: u16, rows: u64) {
    out.push(token);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&cmd.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
}

fn put_error(out: &mut Vec<u8>, number: u32, message: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(1); // state
    body.push(16); // class: user-correctable error
    put_us_varchar(&mut body, message);
    let _ = put_b_varchar(&mut body, "TDSFIXTURE");
    let _ = put_b_varchar(&mut body, "");
    body.extend_from_slice(&1u32.to_le_bytes()); // line
    out.push(0xAA);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

fn put_result_set(out: &mut Vec<u8>, set: &ResultSet) -> Result<(), String> {
    let count = u16::try_from(set.columns.len())
        .ok()
        .filter(|n| (1..0xFFFF).contains(n))
        .ok_or("a result set needs 1..65534 columns")?;
    out.push(0x81);
    out.extend_from_slice(&count.to_le_bytes());
    for column in &set.columns {
        put_column_meta(out, column)?;
    }
    for (r, row) in set.rows.iter().enumerate() {
        if row.len() != set.columns.len() {
            return Err(format!(
                "row {r} has {} cells for {} columns",
                row.len(),
                set.columns.len()
            ));
        }
        out.push(0xD1);
        for (column, cell) in set.columns.iter().zip(row) {
            put_cell(out, &column.ty, cell)
                .map_err(|e| format!("row {r}, {:?}: {e}", column.name))?;
        }
    }
    Ok(())
}

/// The token stream of a reply; None for Hangup. `rpc` adds DONEINPROC/RETURNSTATUS/DONEPROC
/// like sp_executesql on a real server. A reply the fixture cannot encode turns into an
/// ERROR 50000 naming the problem (and a line on stderr).
pub(super) fn encode_reply(reply: &Reply, rpc: bool) -> Option<Vec<u8>> {
    let inner = if rpc { DONEINPROC } else { DONE };
    let mut out = Vec::new();
    let error = |out: &mut Vec<u8>, number: u32, message: &str| {
        out.clear();
        put_error(out, number, message);
        put_done(out, if rpc { DONEPROC } else { DONE }, DONE_ERROR, 0, 0);
    };
    match reply {
        Reply::Hangup | Reply::Delayed(..) => return None,
        Reply::Error { number, message } => error(&mut out, *number, message),
        Reply::Affected(rows) => {
            let more = if rpc { DONE_MORE } else { 0 };
            put_done(&mut out, inner, DONE_COUNT | more, 0, *rows);
        }
        Reply::Rows(sets) => {
            let mut failed = None;
            for (i, set) in sets.iter().enumerate() {
                if let Err(e) = put_result_set(&mut out, set) {
                    failed = Some(format!("result set {i}: {e}"));
                    break;
                }
                let last = i + 1 == sets.len() && !rpc;
                let more = if last { 0 } else { DONE_MORE };
                let rows = set.rows.len() as u64;
                put_done(&mut out, inner, DONE_COUNT | more, CMD_SELECT, rows);
            }
            if let Some(problem) = failed {
                let message = format!("tds fixture cannot encode the reply: {problem}");
                eprintln!("{message}");
                error(&mut out, 50000, &message);
                return Some(out);
            }
            if sets.is_empty() && !rpc {
                put_done(&mut out, DONE, 0, 0, 0);
            }
        }
    }
    if rpc && !matches!(reply, Reply::Error { .. }) {
        out.push(0x79); // RETURNSTATUS 0
        out.extend_from_slice(&0i32.to_le_bytes());
        put_done(&mut out, DONEPROC, 0, 0, 0);
    }
    Some(out)
}
