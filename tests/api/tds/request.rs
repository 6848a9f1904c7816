//! Parsing what a client sends: LOGIN7 (MS-TDS 2.2.6.4), SQLBatch (2.2.6.7) and RPC (2.2.6.6)
//! with its parameters decoded to `Sent` values.

use super::codepage::{collation_of, decode_text};
use super::types::{guid_wire_bytes, time_len};
use super::values::{format_date, format_decimal, format_time, TICKS_PER_DAY};
use super::{Login, Request, Sent};

/// Bounds-checked little-endian reader; every failure is a message for stderr.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end =
            end.ok_or_else(|| format!("truncated: {n} bytes wanted at offset {}", self.at))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn utf16(&mut self, units: usize) -> Result<String, String> {
        utf16(self.bytes(units * 2)?)
    }

    /// PLP body: None for PLP_NULL, else the joined chunks.
    fn plp(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.u64()? == u64::MAX {
            return Ok(None);
        }
        let mut data = Vec::new();
        loop {
            let chunk = self.u32()? as usize;
            if chunk == 0 {
                return Ok(Some(data));
            }
            data.extend_from_slice(self.bytes(chunk)?);
        }
    }
}

fn utf16(bytes: &[u8]) -> Result<String, String> {
    if !bytes.len().is_multiple_of(2) {
        return Err("odd UTF-16 byte count".into());
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| "invalid UTF-16".into())
}

/// What the fixture needs from a LOGIN7.
pub(super) struct LoginPacket {
    pub login: Login,
    pub packet_size: u32,
}

pub(super) fn parse_login(payload: &[u8]) -> Result<LoginPacket, String> {
    if payload.len() < 94 {
        return Err(format!("LOGIN7 of {} bytes is too short", payload.len()));
    }
    let word = |at: usize| u16::from_le_bytes([payload[at], payload[at + 1]]) as usize;
    // OffsetLength entries: offset and character count of each variable field.
    let field = |at: usize| -> Result<String, String> {
        let (offset, chars) = (word(at), word(at + 2));
        let bytes = payload
            .get(offset..offset + chars * 2)
            .ok_or_else(|| format!("LOGIN7 field at {at} points outside the packet"))?;
        utf16(bytes)
    };
    Ok(LoginPacket {
        login: Login {
            user: field(40)?,
            database: field(68)?,
            app_name: field(48)?,
        },
        packet_size: u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]),
    })
}

/// Skips ALL_HEADERS (a u32 total length including itself).
fn skip_all_headers(r: &mut Reader) -> Result<(), String> {
    let total = r.u32()? as usize;
    if total < 4 {
        return Err(format!("ALL_HEADERS length {total}"));
    }
    r.bytes(total - 4)?;
    Ok(())
}

pub(super) fn parse_batch(payload: &[u8]) -> Result<Request, String> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let sql = utf16(&payload[r.at..])?;
    Ok(Request::Batch { sql })
}

pub(super) fn parse_rpc(payload: &[u8]) -> Result<Request, String> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let name_len = r.u16()?;
    let proc_name = if name_len == 0xFFFF {
        match r.u16()? {
            10 => "sp_executesql".to_string(),
            id => format!("proc id {id}"),
        }
    } else {
        r.utf16(name_len as usize)?
    };
    r.u16()?; // option flags
    let mut values = Vec::new();
    while !r.done() {
        let name_chars = r.u8()? as usize;
        r.utf16(name_chars)?;
        r.u8()?; // status flags
        values.push(parse_value(&mut r)?);
    }
    let is_executesql = proc_name.to_ascii_lowercase().ends_with("sp_executesql");
    if !is_executesql {
        // Other procedures: the name as sql and every parameter as a value.
        return Ok(Request::Rpc {
            sql: proc_name,
            declarations: String::new(),
            params: values,
        });
    }
    let mut values = values.into_iter();
    let text = |v: Option<Sent>| match v {
        Some(Sent::Text(s)) => s,
        None | Some(Sent::Null) => String::new(),
        Some(other) => format!("{other:?}"),
    };
    let sql = text(values.next());
    let declarations = text(values.next());
    Ok(Request::Rpc {
        sql,
        declarations,
        params: values.collect(),
    })
}

/// One parameter: TYPE_INFO then the value (MS-TDS 2.2.5.5.1, 2.2.6.6).
fn parse_value(r: &mut Reader) -> Result<Sent, String> {
    let ty = r.u8()?;
    let sent = match ty {
        0x1F => Sent::Null,
        // Fixed-length types.
        0x30 => Sent::Int(r.u8()? as i64),
        0x32 => Sent::Bool(r.u8()? != 0),
        0x34 => Sent::Int(i16::from_le_bytes(r.array()?) as i64),
        0x38 => Sent::Int(i32::from_le_bytes(r.array()?) as i64),
        0x7F => Sent::Int(i64::from_le_bytes(r.array()?)),
        0x3B => Sent::Float(f32::from_le_bytes(r.array()?) as f64),
        0x3E => Sent::Float(f64::from_le_bytes(r.array()?)),
        0x3C | 0x7A | 0x3D | 0x3A => {
            let len = if matches!(ty, 0x3C | 0x3D) { 8 } else { 4 };
            byte_len_value(ty, r.bytes(len)?)?
        }
        // BYTELEN types: max length, then a length byte and the value.
        0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 => {
            r.u8()?;
            let len = r.u8()? as usize;
            if len == 0 {
                Sent::Null
            } else {
                byte_len_value(ty, r.bytes(len)?)?
            }
        }
        0x6A | 0x6C => {
            r.u8()?;
            let _precision = r.u8()?;
            let scale = r.u8()?;
            let len = r.u8()? as usize;
            if len == 0 {
                Sent::Null
            } else {
                let sign = r.u8()?;
                let mut magnitude = [0u8; 16];
                let digits = r.bytes(len - 1)?;
                magnitude
                    .get_mut(..digits.len())
                    .ok_or("decimal wider than 16 bytes")?
                    .copy_from_slice(digits);
                Sent::Decimal(format_decimal(
                    sign == 0,
                    u128::from_le_bytes(magnitude),
                    scale,
                ))
            }
        }
        0x28 => match r.u8()? {
            0 => Sent::Null,
            _ => Sent::Other(format!("date {}", format_date(read_date(r)?))),
        },
        0x29..=0x2B => {
            let scale = r.u8()?;
            if scale > 7 {
                return Err(format!("time scale {scale}"));
            }
            if r.u8()? == 0 {
                Sent::Null
            } else {
                temporal_value(ty, scale, r)?
            }
        }
        // USHORTLEN (or PLP when the max length is 0xFFFF) types.
        0xA5 | 0xAD | 0xA7 | 0xAF | 0xE7 | 0xEF => {
            let max = r.u16()?;
            let collation = if matches!(ty, 0xA7 | 0xAF | 0xE7 | 0xEF) {
                Some(collation_of(r.bytes(5)?))
            } else {
                None
            };
            let data = if max == 0xFFFF {
                r.plp()?
            } else {
                match r.u16()? {
                    0xFFFF => None,
                    len => Some(r.bytes(len as usize)?.to_vec()),
                }
            };
            match (data, ty, collation) {
                (None, ..) => Sent::Null,
                (Some(bytes), 0xA5 | 0xAD, _) => Sent::Binary(bytes),
                (Some(bytes), 0xE7 | 0xEF, _) => Sent::Text(utf16(&bytes)?),
                (Some(bytes), _, collation) => Sent::Text(decode_text(
                    collation.unwrap_or(super::Collation::Cp1252),
                    &bytes,
                )),
            }
        }
        // LONGLEN types.
        0x22 | 0x23 | 0x63 => {
            r.u32()?;
            let collation = if ty != 0x22 {
                Some(collation_of(r.bytes(5)?))
            } else {
                None
            };
            match r.u32()? {
                u32::MAX => Sent::Null,
                len => {
                    let bytes = r.bytes(len as usize)?;
                    match (ty, collation) {
                        (0x22, _) => Sent::Binary(bytes.to_vec()),
                        (0x63, _) => Sent::Text(utf16(bytes)?),
                        (_, collation) => Sent::Text(decode_text(
                            collation.unwrap_or(super::Collation::Cp1252),
                            bytes,
                        )),
                    }
                }
            }
        }
        0xF1 => {
            if r.u8()? == 1 {
                let db = r.u8()? as usize;
                r.utf16(db)?;
                let owner = r.u8()? as usize;
                r.utf16(owner)?;
                let collection = r.u16()? as usize;
                r.utf16(collection)?;
            }
            match r.plp()? {
                None => Sent::Null,
                Some(bytes) => Sent::Other(format!("xml {}", utf16(&bytes)?)),
            }
        }
        0x62 => {
            r.u32()?;
            match r.u32()? {
                0 => Sent::Null,
                len => Sent::Other(format!("sql_variant {:02X?}", r.bytes(len as usize)?)),
            }
        }
        other => return Err(format!("parameter type {other:#04x} is not supported")),
    };
    Ok(sent)
}

/// The value of a fixed or BYTELEN type from its bytes.
fn byte_len_value(ty: u8, b: &[u8]) -> Result<Sent, String> {
    let bad = || format!("type {ty:#04x} with a {}-byte value", b.len());
    let sent = match (ty, b.len()) {
        (0x26, 1) => Sent::Int(b[0] as i64),
        (0x26, 2) => Sent::Int(i16::from_le_bytes([b[0], b[1]]) as i64),
        (0x26, 4) => Sent::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
        (0x26, 8) => Sent::Int(i64::from_le_bytes(b.try_into().map_err(|_| bad())?)),
        (0x68, 1) => Sent::Bool(b[0] != 0),
        (0x6D, 4) => Sent::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        (0x6D, 8) => Sent::Float(f64::from_le_bytes(b.try_into().map_err(|_| bad())?)),
        (0x6E | 0x7A, 4) | (0x3C, 8) | (0x6E, 8) => {
            let scaled = if b.len() == 4 {
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
            } else {
                let high = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64;
                let low = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as i64;
                (high << 32) | low
            };
            Sent::Decimal(format_decimal(scaled < 0, scaled.unsigned_abs() as u128, 4))
        }
        (0x6F | 0x3D, 8) => {
            let days = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64;
            let fragments = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as u64;
            let ms = (fragments * 10 + 1) / 3; // 1/300 s to ms, rounded like SQL Server
            let text = format!(
                "{} {}",
                format_date(days + 693_595),
                format_time(ms * 10_000, 3)
            );
            Sent::Other(format!("datetime {text}"))
        }
        (0x6F | 0x3A, 4) => {
            let days = u16::from_le_bytes([b[0], b[1]]) as i64;
            let minutes = u16::from_le_bytes([b[2], b[3]]) as u64;
            let text = format!(
                "{} {}",
                format_date(days + 693_595),
                format_time(minutes * 600_000_000, 0)
            );
            Sent::Other(format!("smalldatetime {}", &text[..text.len() - 3]))
        }
        (0x24, 16) => {
            let bytes: [u8; 16] = b.try_into().map_err(|_| bad())?;
            let uuid = uuid::Uuid::from_bytes(guid_wire_bytes(bytes));
            Sent::Guid(uuid.hyphenated().to_string().to_uppercase())
        }
        _ => return Err(bad()),
    };
    Ok(sent)
}

fn read_date(r: &mut Reader) -> Result<i64, String> {
    let b = r.bytes(3)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]) as i64)
}

fn read_time(r: &mut Reader, scale: u8) -> Result<u64, String> {
    let mut b = [0u8; 8];
    b[..time_len(scale)].copy_from_slice(r.bytes(time_len(scale))?);
    Ok(u64::from_le_bytes(b) * 10u64.pow(7 - scale as u32))
}

/// time / datetime2 / datetimeoffset as "time(7) 13:45:30.1234567" and the like.
fn temporal_value(ty: u8, scale: u8, r: &mut Reader) -> Result<Sent, String> {
    let ticks = read_time(r, scale)?;
    let text = match ty {
        0x29 => format!("time({scale}) {}", format_time(ticks, scale)),
        0x2A => {
            let days = read_date(r)?;
            let (date, time) = (format_date(days), format_time(ticks, scale));
            format!("datetime2({scale}) {date} {time}")
        }
        _ => {
            let days = read_date(r)?;
            let offset = i16::from_le_bytes(r.array()?) as i64;
            // The wire holds UTC; show local time with its offset, as it was written.
            let local = days * TICKS_PER_DAY + ticks as i64 + offset * 600_000_000;
            let date = format_date(local.div_euclid(TICKS_PER_DAY));
            let time = format_time(local.rem_euclid(TICKS_PER_DAY) as u64, scale);
            let sign = if offset < 0 { '-' } else { '+' };
            let (h, m) = (offset.abs() / 60, offset.abs() % 60);
            format!("datetimeoffset({scale}) {date} {time} {sign}{h:02}:{m:02}")
        }
    };
    Ok(Sent::Other(text))
}
