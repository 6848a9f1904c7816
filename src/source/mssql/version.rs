//! The SQL Server version, read at connect: which product it is and whether Portico serves it.

/// `SERVERPROPERTY('ProductVersion')`, e.g. `10.50.6000.34`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// Major version: 10 is 2008, 11 is 2012, 13 is 2016, 16 is 2022.
    pub major: u32,
    /// Minor version (50 for 2008 R2).
    pub minor: u32,
    /// The text the server reported.
    pub text: String,
}

impl ServerVersion {
    /// The query that reads it.
    pub const QUERY: &'static str =
        "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128))";

    /// Parses `major.minor.build.revision`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some(Self {
            major,
            minor,
            text: text.trim().to_string(),
        })
    }

    /// Whether Portico's T-SQL runs on it: 2008 (`date`, `datetime2`, TDS 7.3) and later.
    pub fn supported(&self) -> bool {
        self.major >= 10
    }

    /// The product name.
    pub fn product(&self) -> &'static str {
        match (self.major, self.minor) {
            (0..=8, _) => "2000 or older",
            (9, _) => "2005",
            (10, 0..=49) => "2008",
            (10, _) => "2008 R2",
            (11, _) => "2012",
            (12, _) => "2014",
            (13, _) => "2016",
            (14, _) => "2017",
            (15, _) => "2019",
            (16, _) => "2022",
            _ => "2025 or newer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_name_their_product_and_2005_is_refused() {
        let r2 = ServerVersion::parse("10.50.6000.34").unwrap();
        assert_eq!((r2.product(), r2.supported()), ("2008 R2", true));
        let v2016 = ServerVersion::parse("13.0.5026.0").unwrap();
        assert_eq!(v2016.product(), "2016");
        let v2005 = ServerVersion::parse("9.00.5000.00").unwrap();
        assert_eq!((v2005.product(), v2005.supported()), ("2005", false));
        assert_eq!(ServerVersion::parse("banana"), None);
    }
}
