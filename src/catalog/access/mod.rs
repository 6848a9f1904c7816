//! Authorization: what a principal may do with a resource. A resource's access settings
//! (scopes, row policies, field masks) compile into a [`ResourceAccess`]; `authorize` turns it
//! and a principal into a [`Grant`] (conditions added to every query, hidden fields), and
//! [`evaluate`] applies a grant's conditions to a row Portico already holds (a change event),
//! the way the database applies them to a query. Who the principal is, is `crate::auth`'s
//! business; this module only reads its scopes and claims.

mod condition;
pub mod evaluate;
mod policy;

pub use policy::{Denial, FieldMask, Grant, Inherited, ResourceAccess, RowPolicy, Verb};

use super::field::Field;
use crate::config::{Config, Problem, ResourceConfig};

/// The access rules of a resource, or the problems that prevent them.
pub fn compile_access(
    config: &Config,
    rc: &ResourceConfig,
    fields: &[Field],
    default_sort: &[(usize, bool)],
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<ResourceAccess> {
    let before = problems.len();
    let mut push = |location: String, message: String| problems.push(Problem { location, message });
    if config.auth.is_none() && !rc.anonymous {
        push(
            at.to_string(),
            "needs a bearer token, but [auth] is not configured: configure [auth] or set `anonymous = true`".into(),
        );
    }
    let scopes = [
        ("read_scope", &rc.read_scope),
        ("write_scope", &rc.write_scope),
    ]
    .into_iter()
    .filter_map(|(key, scope)| Some((key.to_string(), scope.as_ref()?)))
    .chain(rc.row_policies.iter().enumerate().flat_map(|(i, p)| {
        [
            ("when_scope", &p.when_scope),
            ("unless_scope", &p.unless_scope),
        ]
        .into_iter()
        .filter_map(move |(key, scope)| Some((format!("row_policies[{i}].{key}"), scope.as_ref()?)))
    }))
    .chain(rc.fields.iter().filter_map(|(name, f)| {
        Some((
            format!("fields.{name}.requires_scope"),
            f.requires_scope.as_ref()?,
        ))
    }))
    .chain(rc.fields.iter().filter_map(|(name, f)| {
        Some((
            format!("fields.{name}.write_scope"),
            f.write_scope.as_ref()?,
        ))
    }));
    for (key, scope) in scopes {
        if !crate::auth::is_scope_token(scope) {
            push(
                format!("{at}.{key}"),
                format!("`{scope}` is not a scope: use printable ASCII without spaces, quotes or backslashes"),
            );
        }
    }
    if rc.anonymous && rc.read_scope.is_some() {
        push(
            format!("{at}.read_scope"),
            "contradicts `anonymous = true`: callers without a token have no scope".into(),
        );
    }
    let mut masks = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let Some(scope) = rc
            .fields
            .get(&field.name)
            .and_then(|f| f.requires_scope.clone())
        else {
            continue;
        };
        let location = format!("{at}.fields.{}.requires_scope", field.name);
        // Keys and the default order reach clients in URLs and cursors, so they cannot hide.
        if field.is_key {
            push(location, "a key field cannot be hidden".into());
        } else if default_sort.iter().any(|&(s, _)| s == i) {
            push(
                location,
                "a field of `default_sort` cannot be hidden".into(),
            );
        } else if let Some(twin) = fields.iter().find(|f| {
            f.name != field.name
                && f.column.eq_ignore_ascii_case(&field.column)
                && rc
                    .fields
                    .get(&f.name)
                    .and_then(|c| c.requires_scope.as_ref())
                    != Some(&scope)
        }) {
            // Otherwise the other field would show the hidden column.
            push(
                location,
                format!(
                    "field `{}` reads the same column without this scope",
                    twin.name
                ),
            );
        } else {
            masks.push((i, scope));
        }
    }
    let mut write_masks = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let Some(scope) = rc
            .fields
            .get(&field.name)
            .and_then(|f| f.write_scope.clone())
        else {
            continue;
        };
        if field.read_only {
            push(
                format!("{at}.fields.{}.write_scope", field.name),
                "the field is read-only: nobody writes it".into(),
            );
        } else {
            write_masks.push((i, scope));
        }
    }
    let access = ResourceAccess::compile(
        rc.anonymous,
        rc.read_scope.clone(),
        rc.write_scope.clone(),
        &rc.row_policies,
        fields,
        masks,
        write_masks,
    )
    .map_err(|found| {
        for (suffix, message) in found {
            push(format!("{at}.{suffix}"), message);
        }
    })
    .ok();
    if problems.len() > before {
        return None;
    }
    access
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Denial, Verb};
    use crate::auth::Principal;
    use crate::catalog::{compile, Catalog};
    use crate::config::Problem;
    use crate::source::select::{CmpOp, Condition};
    use crate::source::Value;

    fn compile_text(resource_extra: &str, auth: bool) -> Result<Catalog, Vec<Problem>> {
        let auth = if auth { crate::config::TEST_AUTH } else { "" };
        let text = format!(
            r#"{auth}
            [sources.erp]
            kind = "odbc"
            connection_string = "DSN=x"
            dialect = "sqlite"
            [versions.v1.resources.jobs]
            source = "erp"
            table = "JOBS"
            key = ["id"]
            {resource_extra}
            [versions.v1.resources.jobs.fields]
            id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
            customer_id = {{ column = "CUST_NO", type = "string", column_type = "char(6)" }}
            cost = {{ column = "COST", type = "decimal", requires_scope = "jobs:cost" }}
            "#
        );
        let config = crate::config::parse("t.toml", &text, &|_| None).expect("parses");
        compile(&config)
    }

    fn principal(claims: serde_json::Value) -> Principal {
        Principal::from_claims(claims.as_object().cloned().unwrap_or_default(), &[])
    }

    const OWN_JOBS: &str = r#"read_scope = "jobs:read"
        [[versions.v1.resources.jobs.row_policies]]
        name = "own"
        unless_scope = "jobs:all"
        condition = "CUST_NO = {claims.customer_id}""#;

    #[test]
    fn a_resource_needs_auth_or_an_explicit_anonymous() {
        let problems = compile_text("", false).unwrap_err();
        assert!(
            problems[0].message.contains("[auth] is not configured"),
            "{problems:?}"
        );
        assert!(compile_text("anonymous = true", false).is_ok());
        assert!(compile_text("", true).is_ok());
    }

    #[test]
    fn a_policy_binds_the_claim_through_the_field_transform() {
        let catalog = compile_text(OWN_JOBS, true).unwrap();
        let access = &catalog.resource("v1", "jobs").unwrap().access;
        let portal = principal(json!({"sub": "p", "scope": "jobs:read", "customer_id": "C1"}));
        let grant = access.authorize(&portal, Verb::Read).unwrap();
        match grant.conditions.as_slice() {
            [Condition::Compare {
                column,
                op: CmpOp::Eq,
                param,
            }] => {
                assert_eq!(column, "CUST_NO");
                // CHAR(6): padded exactly as the legacy programs store it.
                assert_eq!(param.value, Value::Text(b"C1    ".to_vec()));
            }
            other => panic!("{other:?}"),
        }
        assert!(grant.mask.hides(2), "cost is hidden without jobs:cost");
        assert!(grant.is_restricted());

        let other = principal(json!({"sub": "q", "scope": "jobs:read", "customer_id": "C2"}));
        let other_grant = access.authorize(&other, Verb::Read).unwrap();
        assert_ne!(
            grant.identity, other_grant.identity,
            "two customers never share"
        );
        let same = principal(json!({"sub": "r", "scope": "jobs:read", "customer_id": "C1"}));
        assert_eq!(
            grant.identity,
            access.authorize(&same, Verb::Read).unwrap().identity
        );

        let staff = principal(json!({"sub": "s", "scope": "jobs:read jobs:all jobs:cost"}));
        let grant = access.authorize(&staff, Verb::Read).unwrap();
        assert!(grant.conditions.is_empty() && !grant.is_restricted());
    }

    #[test]
    fn refusals_name_what_is_missing() {
        let catalog = compile_text(OWN_JOBS, true).unwrap();
        let access = &catalog.resource("v1", "jobs").unwrap().access;
        assert_eq!(
            access
                .authorize(&Principal::anonymous(), Verb::Read)
                .unwrap_err(),
            Denial::Unauthenticated
        );
        let no_scope = principal(json!({"sub": "p", "customer_id": "C1"}));
        assert_eq!(
            access.authorize(&no_scope, Verb::Read).unwrap_err(),
            Denial::MissingScope("jobs:read".into())
        );
        // A token without the claim gets 403, never unfiltered rows.
        let no_claim = principal(json!({"sub": "p", "scope": "jobs:read"}));
        assert!(matches!(
            access.authorize(&no_claim, Verb::Read).unwrap_err(),
            Denial::MissingClaim { claim, .. } if claim == "customer_id"
        ));
        let object_claim = principal(json!({"sub": "p", "scope": "jobs:read", "customer_id": {}}));
        assert!(matches!(
            access.authorize(&object_claim, Verb::Read).unwrap_err(),
            Denial::BadClaim { .. }
        ));
    }

    #[test]
    fn in_takes_an_array_claim_and_an_empty_one_grants_nothing() {
        let policy = r#"[[versions.v1.resources.jobs.row_policies]]
            name = "accounts"
            condition = "customer_id IN {claims.accounts} AND JOB_NO <> 'X1'""#;
        let catalog = compile_text(policy, true).unwrap();
        let access = &catalog.resource("v1", "jobs").unwrap().access;
        let p = principal(json!({"sub": "p", "accounts": ["A", "B"]}));
        let grant = access.authorize(&p, Verb::Read).unwrap();
        assert!(matches!(&grant.conditions[0], Condition::In { params, .. } if params.len() == 2));
        assert!(matches!(
            &grant.conditions[1],
            Condition::Compare { op: CmpOp::Ne, .. }
        ));
        let none = principal(json!({"sub": "p", "accounts": []}));
        let grant = access.authorize(&none, Verb::Read).unwrap();
        assert!(matches!(&grant.conditions[0], Condition::Or(items) if items.is_empty()));
    }

    #[test]
    fn bad_policies_and_masks_are_config_errors() {
        for (extra, location) in [
            (
                "[[versions.v1.resources.jobs.row_policies]]\nname = \"x\"\ncondition = \"CUST_NO = \"",
                "row_policies[0].condition",
            ),
            (
                "[[versions.v1.resources.jobs.row_policies]]\nname = \"x\"\ncondition = \"CUST_NO = {claims.a} OR 1=1\"",
                "row_policies[0].condition",
            ),
            (
                "[[versions.v1.resources.jobs.row_policies]]\nname = \"x\"\ncondition = \"CUST_NO = {token.a}\"",
                "row_policies[0].condition",
            ),
            (
                "[[versions.v1.resources.jobs.row_policies]]\nname = \"x\"\ncondition = \"CUST;DROP = {claims.a}\"",
                "row_policies[0].condition",
            ),
            (
                "[[versions.v1.resources.jobs.row_policies]]\nname = \"x\"\nwhen_scope = \"a\"\nunless_scope = \"b\"\ncondition = \"CUST_NO = {sub}\"",
                "row_policies[0]",
            ),
            ("default_sort = [\"cost\"]", "fields.cost.requires_scope"),
            ("read_scope = \"jobs read\"", "read_scope"),
            ("anonymous = true\nread_scope = \"jobs:read\"", "read_scope"),
        ] {
            let problems = compile_text(extra, true).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.location == format!("versions.v1.resources.jobs.{location}")),
                "{extra}: {problems:?}"
            );
        }
    }
}
