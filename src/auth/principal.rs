//! The caller a request acts for.

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};

/// A verified caller (or the anonymous one): subject, scopes and every claim of its token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Principal {
    /// `sub`; `None` for anonymous calls and tokens without one.
    pub subject: Option<String>,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
    /// The token's claims, for row policies.
    pub claims: Map<String, Json>,
    /// Whether a verified token stands behind this principal.
    pub authenticated: bool,
}

impl Principal {
    /// The caller without a token.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Builds a principal from verified claims; scopes come from `scope_claim` (a dotted path)
    /// or, when it is `None`, from `scope` (space separated) then `scp` (array).
    pub fn from_claims(claims: Map<String, Json>, scope_claim: Option<&str>) -> Self {
        let scopes = match scope_claim {
            Some(path) => scopes_of(lookup(&claims, path)),
            None => {
                let from_scope = scopes_of(claims.get("scope"));
                if from_scope.is_empty() {
                    scopes_of(claims.get("scp"))
                } else {
                    from_scope
                }
            }
        };
        Self {
            subject: claims.get("sub").and_then(Json::as_str).map(str::to_string),
            scopes,
            claims,
            authenticated: true,
        }
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The claim at a dotted path (`org.id`).
    pub fn claim(&self, path: &str) -> Option<&Json> {
        lookup(&self.claims, path)
    }

    /// Name for logs: the subject, or `anonymous`.
    pub fn name(&self) -> &str {
        match (&self.subject, self.authenticated) {
            (Some(s), _) => s,
            (None, true) => "token-without-sub",
            (None, false) => "anonymous",
        }
    }
}

fn lookup<'a>(claims: &'a Map<String, Json>, path: &str) -> Option<&'a Json> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A space-separated string or an array of strings; anything else grants nothing.
fn scopes_of(value: Option<&Json>) -> BTreeSet<String> {
    match value {
        Some(Json::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect(),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Json) -> Map<String, Json> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scopes_come_from_scope_then_scp() {
        let p = Principal::from_claims(claims(json!({"sub": "a", "scope": "x y"})), None);
        assert!(p.has_scope("x") && p.has_scope("y") && !p.has_scope("z"));
        let p = Principal::from_claims(claims(json!({"scp": ["x", 3, "z"]})), None);
        assert_eq!(p.scopes.iter().collect::<Vec<_>>(), ["x", "z"]);
        assert_eq!(p.name(), "token-without-sub");
    }

    #[test]
    fn a_configured_claim_path_is_followed() {
        let token = json!({"realm_access": {"roles": ["jobs:read"]}, "scope": "other"});
        let p = Principal::from_claims(claims(token), Some("realm_access.roles"));
        assert_eq!(p.scopes.iter().collect::<Vec<_>>(), ["jobs:read"]);
        assert_eq!(p.claim("realm_access.roles.0"), None);
        assert!(p.claim("realm_access.roles").is_some());
    }
}
