//! Driver diagnostics as text safe to print: a driver's message may hold control characters
//! (mdbtools puts a NUL in its SQLSTATE), which would reach terminals and log lines raw.

use std::fmt::Write;

/// `text` on one line with no control character: line breaks and tabs become spaces (runs
/// of them one), any other control character its `\u{…}` escape; trailing blanks dropped.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\n' | '\r' | '\t') {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else if c.is_control() {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// An ODBC error's text, printable.
pub fn driver_text(error: &odbc_api::Error) -> String {
    printable(&error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_joined() {
        assert_eq!(
            printable(
                "ODBC error:\nState: \u{0}0000, Native error: 1, Message: Couldn't parse SQL\n"
            ),
            "ODBC error: State: \\u{0}0000, Native error: 1, Message: Couldn't parse SQL"
        );
        assert_eq!(
            printable("a\r\n\tb\u{1b}[31m\u{7f}"),
            "a b\\u{1b}[31m\\u{7f}"
        );
        assert_eq!(printable("Umsätze «ok»"), "Umsätze «ok»");
    }
}
