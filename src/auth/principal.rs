//! The caller a request acts for.

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};

/// Whether `scope` is a scope token (RFC 6749 §3.3): printable ASCII without space, `"` or `\`,
/// so it can be named in a `WWW-Authenticate` header as it is.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

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

    /// Builds a principal from verified claims; scopes come from every claim path of
    /// `scope_claims` (dotted, merged) or, when it is empty, from `scope` then `scp`.
    pub fn from_claims(claims: Map<String, Json>, scope_claims: &[String]) -> Self {
        let scopes = if scope_claims.is_empty() {
            let from_scope = scopes_of(claims.get("scope"));
            if from_scope.is_empty() {
                scopes_of(claims.get("scp"))
            } else {
                from_scope
            }
        } else {
            scope_claims
                .iter()
                .flat_map(|path| scopes_of(lookup(&claims, path)))
                .collect()
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

    /// Where the token carries `scope` although it was not read from there: a claim identity
    /// providers put scopes in (Auth0 `permissions`, Azure AD `roles`, Keycloak
    /// `realm_access.roles` and `resource_access.<client>.roles`) that `[auth] scope_claim`
    /// does not name. Says what to configure.
    pub fn scope_hint(&self, scope: &str) -> Option<String> {
        let mut places: Vec<String> =
            ["scope", "scp", "permissions", "roles", "realm_access.roles"]
                .iter()
                .map(|p| p.to_string())
                .collect();
        if let Some(Json::Object(clients)) = self.claims.get("resource_access") {
            places.extend(clients.keys().map(|c| format!("resource_access.{c}.roles")));
        }
        let holder = places
            .into_iter()
            .find(|path| scopes_of(lookup(&self.claims, path)).contains(scope))?;
        Some(format!(
            "the token's `{holder}` claim lists it: name that claim in [auth] scope_claim"
        ))
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

/// The claim at a dotted path.
pub(super) fn lookup<'a>(claims: &'a Map<String, Json>, path: &str) -> Option<&'a Json> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A string of scope tokens separated by ASCII spaces (RFC 6749 §3.3), or an array of
/// strings taken as they are; anything else grants nothing. A part that is not a scope token
/// (a no-break space, a tab, a quote) grants nothing, so it cannot smuggle in a second scope.
fn scopes_of(value: Option<&Json>) -> BTreeSet<String> {
    match value {
        Some(Json::String(s)) => s
            .split(' ')
            .filter(|part| is_scope_token(part))
            .map(str::to_string)
            .collect(),
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
        let p = Principal::from_claims(claims(json!({"sub": "a", "scope": "x y"})), &[]);
        assert!(p.has_scope("x") && p.has_scope("y") && !p.has_scope("z"));
        let p = Principal::from_claims(claims(json!({"scp": ["x", 3, "z"]})), &[]);
        assert_eq!(p.scopes.iter().collect::<Vec<_>>(), ["x", "z"]);
        assert_eq!(p.name(), "token-without-sub");
    }

    #[test]
    fn a_configured_claim_path_is_followed() {
        let token = json!({"realm_access": {"roles": ["jobs:read"]}, "scope": "other"});
        let p = Principal::from_claims(claims(token), &["realm_access.roles".into()]);
        assert_eq!(p.scopes.iter().collect::<Vec<_>>(), ["jobs:read"]);
        assert_eq!(p.claim("realm_access.roles.0"), None);
        assert!(p.claim("realm_access.roles").is_some());
    }

    #[test]
    fn scopes_split_on_ascii_spaces_only() {
        // U+00A0 is whitespace to Rust's `split_whitespace`, not to RFC 6749.
        let token = json!({"scope": "jobs:read\u{a0}jobs:read:all  ops:read\tx"});
        let p = Principal::from_claims(claims(token), &[]);
        assert_eq!(p.scopes.iter().collect::<Vec<_>>(), Vec::<&String>::new());
        let token = json!({"scope": " jobs:read  ops:read "});
        let p = Principal::from_claims(claims(token), &[]);
        assert_eq!(
            p.scopes.iter().collect::<Vec<_>>(),
            ["jobs:read", "ops:read"]
        );
    }

    #[test]
    fn several_claim_paths_are_merged() {
        // Azure AD: delegated scopes in `scp`, application roles in `roles`.
        let token = json!({"scp": "jobs:read", "roles": ["jobs:read:all"], "scope": "ignored"});
        let p = Principal::from_claims(claims(token), &["scp".into(), "roles".into()]);
        assert_eq!(
            p.scopes.iter().collect::<Vec<_>>(),
            ["jobs:read", "jobs:read:all"]
        );
    }
}
