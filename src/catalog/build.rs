//! Compiles configuration into the catalog, collecting every problem with its location.

use indexmap::IndexMap;

use super::field::{compile_field, is_url_name, Field};
use super::{Catalog, Resource, Version};
use crate::config::{Config, Problem, ResourceConfig};
use crate::source::select::Relation;

/// First path segments Portico serves itself, so no version can take them.
pub const RESERVED_PATHS: [&str; 6] = ["admin", "metrics", "healthz", "readyz", "docs", "openapi"];

/// Builds the catalog, or returns every problem found.
pub fn compile(config: &Config) -> Result<Catalog, Vec<Problem>> {
    let (catalog, problems) = compile_partial(config);
    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(problems)
    }
}

/// Builds what compiles and reports every problem found: the catalog holds the resources
/// that compiled (`portico check` proves them against the database even when others did
/// not). With problems it is not fit to serve: parents' row policies are not inherited.
pub fn compile_partial(config: &Config) -> (Catalog, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut catalog = Catalog::default();
    let default_ttl = config.cache.default_ttl;
    if config.versions.is_empty() {
        problems.push(problem("versions", "no API version is declared"));
    }
    for (vname, version) in &config.versions {
        let at = format!("versions.{vname}");
        if !is_url_name(vname) {
            problems.push(problem(&at, "version names use only a-z, 0-9, `_` and `-`"));
        }
        if RESERVED_PATHS.contains(&vname.as_str()) {
            problems.push(problem(
                &at,
                format!("`{vname}` is a path Portico itself serves"),
            ));
        }
        let mut resources = IndexMap::new();
        for (rname, resource) in &version.resources {
            let at = format!("{at}.resources.{rname}");
            if let Some(r) = compile_resource(
                config,
                vname,
                rname,
                resource,
                &at,
                default_ttl,
                &mut problems,
            ) {
                resources.insert(rname.clone(), r);
            }
        }
        check_parents(&resources, &version.resources, &at, &mut problems);
        super::expand::compile_relations(&mut resources, &version.resources, &at, &mut problems);
        if problems.is_empty() {
            inherit_parent_policies(&mut resources, &version.resources, &at, &mut problems);
        }
        if resources.contains_key("procedures") {
            problems.push(problem(
                format!("{at}.resources.procedures"),
                "`procedures` is where this version's stored procedures are served",
            ));
        }
        let names: Vec<&str> = version.resources.keys().map(String::as_str).collect();
        let procedures =
            super::procedure::compile(&version.procedures, config, &names, &at, &mut problems);
        let mut date = |key: &str, text: &Option<String>| {
            let text = text.as_ref()?;
            let parsed = super::date::Date::parse_iso(text);
            if parsed.is_none() {
                problems.push(problem(
                    format!("{at}.{key}"),
                    format!("`{text}` is not a date written YYYY-MM-DD"),
                ));
            }
            parsed
        };
        let deprecated = date("deprecated", &version.deprecated);
        let sunset = date("sunset", &version.sunset);
        if sunset.is_some() && deprecated.is_none() {
            problems.push(problem(
                format!("{at}.sunset"),
                "a version with a sunset must also say when it was `deprecated`",
            ));
        }
        catalog.versions.insert(
            vname.clone(),
            Version {
                name: vname.clone(),
                description: version.description.clone(),
                deprecated,
                sunset,
                deprecation_headers: super::deprecation_headers(deprecated, sunset),
                resources,
                procedures,
            },
        );
    }
    (catalog, problems)
}

fn problem(location: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        location: location.into(),
        message: message.into(),
    }
}

fn compile_resource(
    config: &Config,
    version: &str,
    name: &str,
    rc: &ResourceConfig,
    at: &str,
    default_ttl: std::time::Duration,
    problems: &mut Vec<Problem>,
) -> Option<Resource> {
    let before = problems.len();
    let cache_ttl = rc.cache_ttl.unwrap_or(default_ttl);
    let stale_if_error = rc.stale_if_error;
    if !is_url_name(name) {
        problems.push(problem(at, "resource names use only a-z, 0-9, `_` and `-`"));
    }
    if !config.sources.contains_key(&rc.source) {
        problems.push(problem(
            format!("{at}.source"),
            format!("no source named `{}` in [sources]", rc.source),
        ));
    }
    let relation = match (&rc.table, &rc.query) {
        (Some(t), None) if !t.trim().is_empty() => Some(Relation::Table(t.clone())),
        (None, Some(q)) => {
            let lower = q.trim_start().to_ascii_lowercase();
            if !(lower.starts_with("select") || lower.starts_with("with")) || q.contains(';') {
                problems.push(problem(
                    format!("{at}.query"),
                    "must be one read-only SELECT statement without `;`",
                ));
            }
            Some(Relation::Query(q.clone()))
        }
        _ => {
            problems.push(problem(at, "declare exactly one of `table` or `query`"));
            None
        }
    };
    let fields: Vec<Field> = rc
        .fields
        .iter()
        .filter_map(|(fname, fc)| {
            compile_field(
                fname,
                fc,
                &rc.key,
                config.sources.get(&rc.source).map(|s| s.kind),
                &format!("{at}.fields.{fname}"),
                problems,
            )
        })
        .collect();
    if rc.fields.is_empty() {
        problems.push(problem(
            format!("{at}.fields"),
            "a resource needs at least one field",
        ));
    }
    let find = |n: &str| fields.iter().position(|f| f.name == n);
    if rc.key.is_empty() {
        problems.push(problem(format!("{at}.key"), "name at least one key field"));
    }
    let mut key = Vec::new();
    for k in &rc.key {
        match find(k) {
            Some(i) => key.push(i),
            None => problems.push(problem(
                format!("{at}.key"),
                format!("`{k}` is not a field of this resource"),
            )),
        }
    }
    let mut default_sort = Vec::new();
    for term in &rc.default_sort {
        let (descending, fname) = match term.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, term.as_str()),
        };
        match find(fname) {
            Some(i) if fields[i].sortable => default_sort.push((i, descending)),
            Some(_) => problems.push(problem(
                format!("{at}.default_sort"),
                format!("`{fname}` is not sortable"),
            )),
            None => problems.push(problem(
                format!("{at}.default_sort"),
                format!("`{fname}` is not a field of this resource"),
            )),
        }
    }
    if rc.max_limit == 0 {
        problems.push(problem(format!("{at}.max_limit"), "must be at least 1"));
    }
    if rc.default_limit == 0 || rc.default_limit > rc.max_limit {
        problems.push(problem(
            format!("{at}.default_limit"),
            format!("must be between 1 and max_limit ({})", rc.max_limit),
        ));
    }
    let parent = rc.parent.as_ref().and_then(|p| match find(&p.field) {
        Some(i) => Some((p.resource.clone(), i)),
        None => {
            problems.push(problem(
                format!("{at}.parent.field"),
                format!("`{}` is not a field of this resource", p.field),
            ));
            None
        }
    });
    let access = super::access::compile_access(config, rc, &fields, &default_sort, at, problems);
    let dialect: Option<crate::source::Dialect> = config
        .sources
        .get(&rc.source)
        .map(|s| s.dialect_name().into());
    let writes = super::write::compile(rc, relation.as_ref(), &fields, dialect, at, problems);
    if problems.len() > before {
        return None;
    }
    Some(Resource {
        version: version.to_string(),
        name: name.to_string(),
        description: rc.description.clone(),
        source: rc.source.clone(),
        relation: relation?,
        fields,
        key,
        default_sort,
        default_limit: rc.default_limit,
        max_limit: rc.max_limit,
        max_export_rows: rc.max_export_rows.unwrap_or(config.server.max_export_rows),
        export_chunk_rows: config.server.export_chunk_rows,
        query_limits: super::query::QueryLimits {
            max_filter_terms: config.server.max_filter_terms,
            max_bound_parameters: config.server.max_bound_parameters,
            prefix_parameters: dialect.map_or(1, crate::source::Dialect::prefix_parameters),
        },
        cache_ttl,
        stale_if_error,
        parent,
        access: access?,
        writes,
        changes: false,
        relations: IndexMap::new(),
        aggregates: rc.aggregates,
    })
}

/// Each parent is a resource of the version with a single-field key. A parent that is
/// configured but did not compile has its own problems reported; it is not called missing.
fn check_parents(
    resources: &IndexMap<String, Resource>,
    configured: &IndexMap<String, ResourceConfig>,
    at: &str,
    problems: &mut Vec<Problem>,
) {
    for resource in resources.values() {
        if let Some((parent, _)) = &resource.parent {
            let location = format!("{at}.resources.{}.parent.resource", resource.name);
            match resources.get(parent) {
                None if configured.contains_key(parent) => {}
                None => problems.push(problem(
                    location,
                    format!("no resource `{parent}` in this version"),
                )),
                Some(p) if p.key.len() != 1 => problems.push(problem(
                    location,
                    format!("`{parent}` must have a single-field key to nest under"),
                )),
                Some(_) => {}
            }
        }
    }
}

/// Gives each nested resource its parent's row policies (unless its `parent` says
/// `inherit_policies = false`), so a row hidden under the parent stays hidden when the child
/// is read directly. Parents are settled before their children, so a grandparent's policies
/// reach grandchildren.
fn inherit_parent_policies(
    resources: &mut IndexMap<String, Resource>,
    configs: &IndexMap<String, ResourceConfig>,
    at: &str,
    problems: &mut Vec<Problem>,
) {
    let mut order: Vec<(usize, String)> = Vec::new();
    for name in resources.keys() {
        let mut depth = 0;
        let mut current = name;
        while let Some((parent, _)) = &resources[current].parent {
            depth += 1;
            if depth > resources.len() {
                problems.push(problem(
                    format!("{at}.resources.{name}.parent"),
                    "parents form a cycle",
                ));
                return;
            }
            current = parent;
        }
        order.push((depth, name.clone()));
    }
    order.sort();
    for (_, name) in order {
        let child = &resources[&name];
        let Some((parent_name, link)) = child.parent.clone() else {
            continue;
        };
        let inherits = configs
            .get(&name)
            .and_then(|c| c.parent.as_ref())
            .is_some_and(|p| p.inherit_policies);
        let Some(parent) = resources.get(&parent_name).filter(|_| inherits) else {
            continue;
        };
        if parent.access.policies.is_empty() && parent.access.inherited.is_none() {
            continue;
        }
        if parent.source != child.source {
            problems.push(problem(
                format!("{at}.resources.{name}.parent.inherit_policies"),
                format!(
                    "`{parent_name}` has row policies, which cannot reach across sources: give \
                     this resource its own and set inherit_policies = false"
                ),
            ));
            continue;
        }
        let inherited = super::access::Inherited {
            parent: parent_name.clone(),
            access: parent.access.clone(),
            relation: parent.relation.clone(),
            parent_key: parent.fields[parent.key[0]].column.clone(),
            link: child.fields[link].column.clone(),
        };
        if let Some(child) = resources.get_mut(&name) {
            child.access.inherited = Some(Box::new(inherited));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ColumnType;

    fn compile_text(text: &str) -> Result<Catalog, Vec<Problem>> {
        let config = crate::config::parse("t.toml", text, &|_| None).expect("parses");
        compile(&config)
    }

    const SOURCE: &str = r#"
        [sources.erp]
        kind = "odbc"
        connection_string = "DSN=x"
        dialect = "sqlite"
    "#;

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let text = format!(
            "{SOURCE}
            [versions.v1.resources.jobs]
            source = \"nope\"
            table = \"JOBS\"
            key = [\"id\", \"missing\"]
            default_sort = [\"status\"]
            [versions.v1.resources.jobs.fields]
            id = {{ column = \"JOB_NO\", type = \"string\", column_type = \"char(8)\" }}
            status = {{ column = \"ST\", type = \"string\", codes = {{ O = \"open\" }} }}
            due = {{ column = \"DUE\", type = \"date\", format = \"mm/dd/yyyy\", sortable = true }}
            limit = {{ column = \"L\", type = \"integer\", column_type = \"geometry\" }}
            "
        );
        let problems = compile_text(&text).unwrap_err();
        let at = |suffix: &str| {
            problems
                .iter()
                .any(|p| p.location == format!("versions.v1.resources.jobs{suffix}"))
        };
        assert!(at(".source"), "{problems:?}");
        assert!(at(".key"));
        assert!(at(".default_sort"));
        assert!(at(".fields.due.sortable"));
        assert!(at(".fields.limit"));
        assert!(at(".fields.limit.column_type"));
        assert!(problems.iter().any(|p| p
            .message
            .contains("column `L`: `geometry` values have no single API type")));
        assert!(problems.len() >= 6);
    }

    #[test]
    fn money_fields_need_a_currency_code() {
        for (field, ok) in [
            (
                "{ column = \"Q\", type = \"money\", currency = \"USD\", scale = 2 }",
                true,
            ),
            ("{ column = \"Q\", type = \"money\" }", false),
            (
                "{ column = \"Q\", type = \"money\", currency = \"dollars\" }",
                false,
            ),
            (
                "{ column = \"Q\", type = \"decimal\", currency = \"USD\" }",
                false,
            ),
        ] {
            let text = format!(
                "{SOURCE}
                [versions.v1.resources.jobs]
                source = \"erp\"
                table = \"JOBS\"
                key = [\"id\"]
                anonymous = true
                [versions.v1.resources.jobs.fields]
                id = {{ column = \"JOB_NO\", type = \"string\" }}
                quote = {field}
                "
            );
            let result = compile_text(&text);
            assert_eq!(result.is_ok(), ok, "{field}: {:?}", result.err());
            if let Err(problems) = result {
                assert!(problems
                    .iter()
                    .any(|p| p.location == "versions.v1.resources.jobs.fields.quote.currency"));
            }
        }
    }

    /// A parent whose own `default_sort` is wrong is reported there, once: its child does not
    /// also call it missing, and the child still compiles for `check` to prove.
    #[test]
    fn a_parent_that_failed_to_compile_is_not_reported_missing_by_its_child() {
        let text = format!(
            "{SOURCE}
            [versions.v1.resources.jobs]
            source = \"erp\"
            table = \"JOBS\"
            key = [\"id\"]
            anonymous = true
            default_sort = [\"colour\"]
            [versions.v1.resources.jobs.fields]
            id = {{ column = \"JOB_NO\", type = \"string\" }}
            [versions.v1.resources.lines]
            source = \"erp\"
            table = \"LINES\"
            key = [\"id\"]
            anonymous = true
            parent = {{ resource = \"jobs\", field = \"job\" }}
            [versions.v1.resources.lines.fields]
            id = {{ column = \"LINE_NO\", type = \"integer\" }}
            job = {{ column = \"JOB_NO\", type = \"string\" }}
            [versions.v1.resources.orphans]
            source = \"erp\"
            table = \"ORPHANS\"
            key = [\"id\"]
            anonymous = true
            parent = {{ resource = \"nowhere\", field = \"id\" }}
            [versions.v1.resources.orphans.fields]
            id = {{ column = \"ID\", type = \"integer\" }}
            "
        );
        let config = crate::config::parse("t.toml", &text, &|_| None).expect("parses");
        let (catalog, problems) = compile_partial(&config);
        let found: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            found,
            [
                "versions.v1.resources.jobs.default_sort",
                "versions.v1.resources.orphans.parent.resource",
            ],
            "{problems:?}"
        );
        assert!(catalog.resource("v1", "lines").is_some());
        assert!(catalog.resource("v1", "jobs").is_none());
    }

    #[test]
    fn a_valid_resource_compiles_with_inferred_types() {
        let text = format!(
            "{SOURCE}
            [versions.v1.resources.jobs]
            source = \"erp\"
            table = \"JOBS\"
            key = [\"id\"]
            anonymous = true
            [versions.v1.resources.jobs.fields]
            id = {{ column = \"JOB_NO\", type = \"string\", column_type = \"char(8)\" }}
            due = {{ column = \"DUE\", type = \"date\", format = \"yyyymmdd\" }}
            "
        );
        let catalog = compile_text(&text).unwrap();
        let jobs = catalog.resource("v1", "jobs").unwrap();
        assert!(jobs.fields[0].trim && jobs.fields[0].is_key);
        assert_eq!(jobs.fields[1].column_type, ColumnType::Char(Some(8)));
        assert!(jobs.fields[1].sortable);
    }
}
