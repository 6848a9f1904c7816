//! Text on the wire: single-byte code pages of the collations, UTF-16 and its length-prefixed
//! forms (MS-TDS 2.2.5.1.3, 2.2.5.2.2).

use super::Collation;

/// Collation bytes as SQL Server sends them: LCID 0x0409 with CI/AS flags, then the SQL sort id.
pub(super) fn collation_bytes(collation: Collation) -> [u8; 5] {
    let sort_id = match collation {
        Collation::Cp1252 => 52, // SQL_Latin1_General_CP1_CI_AS
        Collation::Cp437 => 32,  // SQL_Latin1_General_CP437_CI_AS
        Collation::Cp850 => 42,  // SQL_Latin1_General_CP850_CI_AS
    };
    let info = 0x00D0_0409u32.to_le_bytes();
    [info[0], info[1], info[2], info[3], sort_id]
}

/// The code page of wire collation bytes (for decoding varchar parameters).
pub(super) fn collation_of(bytes: &[u8]) -> Collation {
    match bytes.get(4).copied().unwrap_or(0) {
        30..=34 => Collation::Cp437,
        40..=44 | 49 | 55..=61 => Collation::Cp850,
        _ => Collation::Cp1252,
    }
}

/// Upper halves (0x80..=0xFF) of the DOS code pages, as Python's cp437/cp850 codecs map them.
const CP437: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";
const CP850: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈıÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";

/// The 128 characters of 0x80..=0xFF in an OEM code page.
fn oem_table(collation: Collation) -> Vec<char> {
    match collation {
        Collation::Cp850 => CP850.chars().collect(),
        _ => CP437.chars().collect(),
    }
}

/// Text in the collation's single-byte code page.
pub(super) fn encode_text(collation: Collation, text: &str) -> Result<Vec<u8>, String> {
    if collation == Collation::Cp1252 {
        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
        if unmappable {
            return Err(format!("{text:?} is not representable in windows-1252"));
        }
        return Ok(bytes.into_owned());
    }
    let table = oem_table(collation);
    text.chars()
        .map(|c| {
            if c.is_ascii() {
                return Ok(c as u8);
            }
            table
                .iter()
                .position(|t| *t == c)
                .map(|i| 0x80 + i as u8)
                .ok_or_else(|| format!("{c:?} is not in code page {collation:?}"))
        })
        .collect()
}

/// Bytes in the collation's code page back to text.
pub(super) fn decode_text(collation: Collation, bytes: &[u8]) -> String {
    if collation == Collation::Cp1252 {
        return encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned();
    }
    let table = oem_table(collation);
    bytes
        .iter()
        .map(|&b| match b {
            0..=0x7F => b as char,
            _ => table[(b - 0x80) as usize],
        })
        .collect()
}

pub(super) fn put_utf16(out: &mut Vec<u8>, text: &str) {
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

pub(super) fn utf16_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    put_utf16(&mut out, text);
    out
}

/// B_VARCHAR: a character count byte, then UTF-16LE.
pub(super) fn put_b_varchar(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    let units = text.encode_utf16().count();
    let count = u8::try_from(units).map_err(|_| format!("{text:?} is longer than 255 chars"))?;
    out.push(count);
    put_utf16(out, text);
    Ok(())
}

/// US_VARCHAR: a u16 character count, then UTF-16LE.
pub(super) fn put_us_varchar(out: &mut Vec<u8>, text: &str) {
    let units = text.encode_utf16().count().min(u16::MAX as usize);
    out.extend_from_slice(&(units as u16).to_le_bytes());
    for unit in text.encode_utf16().take(units) {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_pages() {
        let oem = [0x82, 0x81, 0x87, 0x8E, 0x99];
        assert_eq!(encode_text(Collation::Cp437, "éüçÄÖ"), Ok(oem.to_vec()));
        assert_eq!(encode_text(Collation::Cp850, "éüçÄÖ"), Ok(oem.to_vec()));
        assert_eq!(decode_text(Collation::Cp850, &[0x82, 0x9B]), "éø");
        assert_eq!(decode_text(Collation::Cp437, &[0x82, 0x9B]), "é¢");
        assert_eq!(
            encode_text(Collation::Cp1252, "Café"),
            Ok(b"Caf\xe9".to_vec())
        );
        assert!(encode_text(Collation::Cp437, "✓").is_err());
    }
}
