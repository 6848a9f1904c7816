//! API names for legacy identifiers: snake_case words, transliterated to ASCII, unique within
//! their scope and clear of the query parameters (`catalog::RESERVED`).

use std::collections::HashSet;

/// Names already given in one scope (a version's resources, a resource's fields).
#[derive(Debug, Default)]
pub struct NameSet {
    used: HashSet<String>,
}

impl NameSet {
    /// The API name of `identifier`, with `_2`, `_3`… when another identifier of this scope
    /// already took it (`Order_ID` beside `OrderID`). `url` names start with `t` when the
    /// identifier starts with a digit (fields with `f`).
    pub fn take(&mut self, identifier: &str, url: bool) -> String {
        let base = api_name(identifier, url);
        let mut name = base.clone();
        let mut n = 2;
        while !self.used.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }
}

/// An API name for a legacy identifier: words split at case changes and at everything that
/// is not a letter or digit (`ShipPostalCode`, `Company Name`, `CUST_NO` → `ship_postal_code`,
/// `company_name`, `cust_no`), lower case, letters with accents or umlauts written in ASCII
/// (`Umsätze` → `umsaetze`).
pub fn api_name(identifier: &str, url: bool) -> String {
    let mut name = words(identifier)
        .iter()
        .map(|word| ascii_word(word))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, if url { 't' } else { 'f' });
    }
    if crate::catalog::RESERVED.contains(&name.as_str()) {
        name.push('_');
    }
    name
}

/// The words of an identifier: runs of letters and digits, split where a lower-case letter
/// meets an upper-case one (`ShipPostal`) and where an acronym ends (`HTTPServer`, `OrderID`).
fn words(identifier: &str) -> Vec<String> {
    let chars: Vec<char> = identifier.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        let previous = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && previous.is_some_and(|p| {
                p.is_lowercase()
                    || ((p.is_uppercase() || p.is_ascii_digit())
                        && next.is_some_and(char::is_lowercase))
            });
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// One word in lower-case ASCII: letters outside ASCII by a small table, others as
/// `u` and their code point in hex, so no two words fall together silently.
fn ascii_word(word: &str) -> String {
    let mut out = String::new();
    for c in word.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if let Some(ascii) = transliteration(c) {
            out.push_str(ascii);
        } else {
            out.push_str(&format!("u{:x}", u32::from(c)));
        }
    }
    out
}

/// ASCII for the lower-case Latin letters legacy schemas use (German, French, Scandinavian,
/// Spanish, Portuguese, Polish, Czech, Turkish…), as a German or French speaker writes them
/// without the marks: `ä` → `ae`, `ß` → `ss`, `é` → `e`.
fn transliteration(c: char) -> Option<&'static str> {
    Some(match c {
        'ä' | 'æ' => "ae",
        'ö' | 'ø' | 'œ' => "oe",
        'ü' => "ue",
        'ß' => "ss",
        'þ' => "th",
        'à' | 'á' | 'â' | 'ã' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ō' | 'ŏ' | 'ő' => "o",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_snake_case() {
        for (identifier, name) in [
            ("ShipPostalCode", "ship_postal_code"),
            ("OrderID", "order_id"),
            ("CustomerID", "customer_id"),
            ("Company Name", "company_name"),
            ("CUST_NO", "cust_no"),
            ("CUST NO", "cust_no"),
            ("HTTPServer", "http_server"),
            ("Address2", "address2"),
            ("unitPrice", "unit_price"),
            ("  Order  Details  ", "order_details"),
            ("Order Details", "order_details"),
            ("ship-via", "ship_via"),
        ] {
            assert_eq!(api_name(identifier, false), name, "{identifier}");
        }
    }

    #[test]
    fn non_ascii_letters_are_transliterated() {
        assert_eq!(api_name("Umsätze", true), "umsaetze");
        assert_eq!(api_name("Straße", false), "strasse");
        assert_eq!(api_name("Café", false), "cafe");
        assert_eq!(api_name("ÄNDERUNG", false), "aenderung");
        assert_eq!(api_name("GrößeÜbersicht", false), "groesse_uebersicht");
        assert_eq!(api_name("Łódź", false), "lodz");
        // A letter outside the table keeps its identity instead of vanishing.
        assert_eq!(api_name("名前", false), "u540du524d");
    }

    #[test]
    fn api_names_are_safe_and_avoid_reserved_words() {
        assert_eq!(api_name("1ST", false), "f1st");
        assert_eq!(api_name("2024 Sales", true), "t2024_sales");
        assert_eq!(api_name("LIMIT", false), "limit_");
        assert_eq!(api_name("Sort", false), "sort_");
        assert_eq!(api_name("", false), "f");
        assert_eq!(api_name("___", true), "t");
        for name in ["limit_", "f1st", "umsaetze", "u540du524d"] {
            assert!(crate::catalog::field::is_url_name(name), "{name}");
        }
    }

    #[test]
    fn names_that_collide_get_a_suffix() {
        let mut names = NameSet::default();
        assert_eq!(names.take("OrderID", false), "order_id");
        assert_eq!(names.take("Order_ID", false), "order_id_2");
        assert_eq!(names.take("ORDER ID", false), "order_id_3");
        assert_eq!(names.take("Straße", false), "strasse");
        assert_eq!(names.take("Strasse", false), "strasse_2");
        assert_eq!(names.take("limit", false), "limit_");
        assert_eq!(names.take("limit_", false), "limit__2");
    }
}
