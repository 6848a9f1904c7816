//! Related rows: the `relations` a resource declares, the `?expand=` a client sends (checked
//! against them), and the one batched read of a relation's rows for a page.

use indexmap::IndexMap;

use super::access::{FieldMask, Grant};
use super::query::{Place, QueryError, QuerySpec};
use super::{plan, Resource};
use crate::config::{Problem, ResourceConfig};
use crate::source::select::{Condition, PerGroup};
use crate::source::Param;

/// Related rows served per row of a to-many relation when it declares no `limit`.
pub const DEFAULT_MANY_LIMIT: usize = 100;

/// Deepest `expand` path (`operations.job`).
pub const MAX_DEPTH: usize = 2;

/// A declared link from a resource's rows to rows of another resource of its version.
#[derive(Debug, Clone)]
pub struct Relationship {
    /// The related resource.
    pub resource: String,
    /// This resource's field whose value finds the related rows.
    pub local: usize,
    /// The related resource's field that holds that value.
    pub remote: usize,
    /// To-many, with the most rows served per row; `None`: to-one.
    pub many: Option<usize>,
}

/// Compiles every resource's `relations` once the version's resources are compiled, each
/// problem with its location. A relation whose resource did not compile is not reported
/// missing (that resource's own problems are).
pub fn compile_relations(
    resources: &mut IndexMap<String, Resource>,
    configs: &IndexMap<String, ResourceConfig>,
    at: &str,
    problems: &mut Vec<Problem>,
) {
    let mut compiled: Vec<(String, IndexMap<String, Relationship>)> = Vec::new();
    for (name, config) in configs {
        let Some(resource) = resources.get(name) else {
            continue;
        };
        let mut relations = IndexMap::new();
        for (relation, rc) in &config.relations {
            let location = format!("{at}.resources.{name}.relations.{relation}");
            let mut push = |suffix: &str, message: String| {
                problems.push(Problem {
                    location: format!("{location}{suffix}"),
                    message,
                })
            };
            if !super::field::is_url_name(relation) || relation.contains('.') {
                push("", "relation names use only a-z, 0-9, `_` and `-`".into());
                continue;
            }
            if resource.field(relation).is_some() {
                push("", format!("`{relation}` is already a field of `{name}`"));
                continue;
            }
            let truncated = format!("{relation}_truncated");
            if rc.many && resource.field(&truncated).is_some() {
                push(
                    "",
                    format!(
                        "`{truncated}` is a field of `{name}`, and the relation would serve it too"
                    ),
                );
                continue;
            }
            let Some(related) = resources.get(&rc.resource) else {
                if !configs.contains_key(&rc.resource) {
                    push(
                        ".resource",
                        format!("no resource `{}` in this version", rc.resource),
                    );
                }
                continue;
            };
            let found = if rc.many {
                many(resource, related, rc, &mut push)
            } else {
                one(resource, related, rc, &mut push)
            };
            let Some((local, remote)) = found else {
                continue;
            };
            let (l, r) = (&resource.fields[local], &related.fields[remote]);
            if l.field_type != r.field_type {
                push(
                    ".field",
                    format!(
                        "`{name}.{}` ({:?}) and `{}.{}` ({:?}) hold values of different types, which never match",
                        l.name, l.field_type, related.name, r.name, r.field_type
                    ),
                );
                continue;
            }
            let many = if rc.many {
                let limit = rc
                    .limit
                    .unwrap_or(DEFAULT_MANY_LIMIT.min(related.max_limit));
                if limit == 0 || limit > related.max_limit {
                    push(
                        ".limit",
                        format!(
                            "must be between 1 and `{}`'s max_limit ({})",
                            related.name, related.max_limit
                        ),
                    );
                    continue;
                }
                Some(limit)
            } else {
                if rc.limit.is_some() {
                    push(
                        ".limit",
                        "a to-one relation serves one row: drop `limit` or set `many = true`"
                            .into(),
                    );
                    continue;
                }
                None
            };
            relations.insert(
                relation.clone(),
                Relationship {
                    resource: related.name.clone(),
                    local,
                    remote,
                    many,
                },
            );
        }
        compiled.push((name.clone(), relations));
    }
    for (name, relations) in compiled {
        if let Some(resource) = resources.get_mut(&name) {
            resource.relations = relations;
        }
    }
}

/// To-one: this resource's `field` holds the related resource's one-field key.
fn one(
    resource: &Resource,
    related: &Resource,
    rc: &crate::config::RelationConfig,
    push: &mut impl FnMut(&str, String),
) -> Option<(usize, usize)> {
    let Some(field) = &rc.field else {
        push(
            ".field",
            format!(
                "name the field of `{}` that holds the `{}` key",
                resource.name, related.name
            ),
        );
        return None;
    };
    let Some(local) = resource.field(field) else {
        push(
            ".field",
            format!("`{field}` is not a field of `{}`", resource.name),
        );
        return None;
    };
    let [remote] = related.key[..] else {
        push(
            ".resource",
            format!(
                "`{}` must have a single-field key to be found by one field",
                related.name
            ),
        );
        return None;
    };
    Some((local, remote))
}

/// To-many: the related resource's `field` (or its `parent` link to this resource) holds this
/// resource's one-field key.
fn many(
    resource: &Resource,
    related: &Resource,
    rc: &crate::config::RelationConfig,
    push: &mut impl FnMut(&str, String),
) -> Option<(usize, usize)> {
    let [local] = resource.key[..] else {
        push(
            ".many",
            format!(
                "`{}` needs a single-field key to have related rows",
                resource.name
            ),
        );
        return None;
    };
    let remote = match (&rc.field, &related.parent) {
        (Some(field), _) => match related.field(field) {
            Some(i) => i,
            None => {
                push(
                    ".field",
                    format!("`{field}` is not a field of `{}`", related.name),
                );
                return None;
            }
        },
        (None, Some((parent, link))) if *parent == resource.name => *link,
        (None, _) => {
            push(
                ".field",
                format!(
                    "`{}` is not nested under `{}`: name its field that holds the `{}` key",
                    related.name, resource.name, resource.name
                ),
            );
            return None;
        }
    };
    Some((local, remote))
}

/// One relation a request expands, with the relations it expands in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// The relation's name.
    pub relation: String,
    /// Relations of the related resource to expand too (one level more at most).
    pub nested: Vec<Expansion>,
}

/// Parses `expand=customer,operations.job` against `resource`'s relations (and those of the
/// related resources, looked up in `version`): unknown names and paths deeper than
/// [`MAX_DEPTH`] are 400s naming them.
pub fn parse(
    resource: &Resource,
    version: &IndexMap<String, Resource>,
    value: &str,
) -> Result<Vec<Expansion>, QueryError> {
    let bad = |message: String| QueryError {
        place: Place::Query,
        parameter: "expand".into(),
        message,
    };
    let mut tree: Vec<Expansion> = Vec::new();
    for path in value.split(',') {
        let names: Vec<&str> = path.split('.').collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(bad(format!(
                "has an empty relation name in `{path}`: write `a,b` or `a.b`"
            )));
        }
        if names.len() > MAX_DEPTH {
            return Err(bad(format!(
                "goes {} relations deep in `{path}`; at most {MAX_DEPTH}",
                names.len()
            )));
        }
        let mut current = resource;
        let mut level = &mut tree;
        for name in names {
            let Some(relation) = current.relations.get(name) else {
                let known: Vec<&str> = current.relations.keys().map(String::as_str).collect();
                return Err(bad(format!(
                    "names `{name}`, which is not a relation of `{}` (relations: {})",
                    current.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            let Some(related) = version.get(&relation.resource) else {
                return Err(bad(format!("names `{name}`, which is not served")));
            };
            let index = match level.iter().position(|e| e.relation == name) {
                Some(i) => i,
                None => {
                    level.push(Expansion {
                        relation: name.to_string(),
                        nested: Vec::new(),
                    });
                    level.len() - 1
                }
            };
            level = &mut level[index].nested;
            current = related;
        }
    }
    Ok(tree)
}

/// The canonical text of an expansion tree (for the cache key): order-free, each once.
pub fn cache_key(tree: &[Expansion]) -> String {
    let mut parts: Vec<String> = tree
        .iter()
        .map(|e| {
            if e.nested.is_empty() {
                e.relation.clone()
            } else {
                format!("{}({})", e.relation, cache_key(&e.nested))
            }
        })
        .collect();
    parts.sort_unstable();
    parts.join(",")
}

/// The batched read of one relation's rows for a page: the related resource's visible fields,
/// under its `grant`, whose `remote` field holds one of `values`, in its default order; a
/// to-many relation keeps `limit + 1` rows per value (one more tells a cut list). `extra`
/// fields are read too (the links of nested relations), whatever the mask hides. Returns the
/// plan and the column positions of the `remote` field and of each `extra` field.
pub fn batch_plan(
    related: &Resource,
    relationship: &Relationship,
    grant: &Grant,
    values: Vec<Param>,
    extra: &[usize],
) -> Result<(plan::Plan, usize, Vec<usize>), QueryError> {
    let count = values.len();
    let remote = &related.fields[relationship.remote];
    let mut conditions = grant.conditions.clone();
    conditions.push(Condition::In {
        column: remote.column.clone(),
        params: values,
    });
    let spec = QuerySpec::unfiltered(count);
    let mut plan = plan::list(related, &spec, conditions, &grant.mask, "")?;
    let remote_at = column_of(related, &mut plan, relationship.remote);
    let extra_at = extra
        .iter()
        .map(|&f| column_of(related, &mut plan, f))
        .collect();
    match relationship.many {
        None => plan.select.limit = count,
        Some(limit) => {
            plan.select.per_group = Some(PerGroup {
                column: remote.column.clone(),
                rows: limit + 1,
            });
            plan.select.limit = count.saturating_mul(limit + 1);
        }
    }
    Ok((plan, remote_at, extra_at))
}

/// The position of `field`'s column in each row `plan` reads, added to what it reads when
/// missing (a link that `fields=` or a mask leaves out is still read, never rendered).
pub fn column_of(resource: &Resource, plan: &mut plan::Plan, field: usize) -> usize {
    plan::column_position(&mut plan.select.columns, &resource.fields[field])
}

/// Whether `mask` hides the field a relation starts from (then the relation is not offered:
/// its rows would show the hidden value).
pub fn hidden_by(relationship: &Relationship, mask: &FieldMask) -> bool {
    mask.hides(relationship.local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(relations: &str) -> Result<crate::catalog::Catalog, Vec<Problem>> {
        let text = format!(
            r#"
            [sources.erp]
            kind = "odbc"
            connection_string = "DSN=x"
            dialect = "sqlite"
            [versions.v1.resources.customers]
            source = "erp"
            table = "CUST"
            key = ["id"]
            anonymous = true
            max_limit = 50
            [versions.v1.resources.customers.fields]
            id = {{ column = "CUST_NO", type = "string" }}
            [versions.v1.resources.jobs]
            source = "erp"
            table = "JOBS"
            key = ["id"]
            anonymous = true
            {relations}
            [versions.v1.resources.jobs.fields]
            id = {{ column = "JOB_NO", type = "string" }}
            customer_id = {{ column = "CUST_NO", type = "string" }}
            priority = {{ column = "PRI", type = "integer" }}
            [versions.v1.resources.operations]
            source = "erp"
            table = "OPS"
            key = ["job_id", "seq"]
            anonymous = true
            parent = {{ resource = "jobs", field = "job_id" }}
            [versions.v1.resources.operations.fields]
            job_id = {{ column = "JOB_NO", type = "string" }}
            seq = {{ column = "SEQ", type = "integer" }}
            "#
        );
        let config = crate::config::parse("t.toml", &text, &|_| None).expect("parses");
        crate::catalog::compile(&config)
    }

    #[test]
    fn relations_compile_to_links_between_fields() {
        let catalog = catalog(
            r#"relations.customer = { resource = "customers", field = "customer_id" }
            relations.operations = { resource = "operations", many = true }"#,
        )
        .unwrap();
        let jobs = catalog.resource("v1", "jobs").unwrap();
        let customer = &jobs.relations["customer"];
        assert_eq!(
            (customer.local, customer.remote, customer.many),
            (1, 0, None)
        );
        let operations = &jobs.relations["operations"];
        assert_eq!(
            (operations.local, operations.remote, operations.many),
            (0, 0, Some(DEFAULT_MANY_LIMIT))
        );
    }

    #[test]
    fn every_relation_problem_is_reported_at_its_location() {
        let problems = catalog(
            r#"relations.nowhere = { resource = "suppliers", field = "customer_id" }
            relations.priority = { resource = "customers", field = "customer_id" }
            relations.cust = { resource = "customers", field = "missing" }
            relations.typed = { resource = "customers", field = "priority" }
            relations.ops = { resource = "operations", many = true, limit = 501 }
            relations.back = { resource = "customers", many = true }
            relations.composite = { resource = "operations", field = "id" }"#,
        )
        .unwrap_err();
        let at = |suffix: &str| {
            problems
                .iter()
                .any(|p| p.location == format!("versions.v1.resources.jobs.relations.{suffix}"))
        };
        assert!(at("nowhere.resource"), "{problems:?}");
        assert!(at("priority"), "{problems:?}");
        assert!(at("cust.field"), "{problems:?}");
        assert!(at("typed.field"), "{problems:?}");
        assert!(at("ops.limit"), "{problems:?}");
        assert!(at("back.field"), "{problems:?}");
        assert!(at("composite.resource"), "{problems:?}");
        assert_eq!(problems.len(), 7, "{problems:?}");
    }

    #[test]
    fn expand_paths_are_checked_and_at_most_two_deep() {
        let catalog = catalog(
            r#"relations.customer = { resource = "customers", field = "customer_id" }
            relations.operations = { resource = "operations", many = true }"#,
        )
        .unwrap();
        let version = &catalog.versions["v1"].resources;
        let jobs = &version["jobs"];
        let tree = parse(jobs, version, "operations,customer,customer").unwrap();
        assert_eq!(cache_key(&tree), "customer,operations");
        let error = parse(jobs, version, "supplier").unwrap_err();
        assert!(
            error.message.contains("relations: customer, operations"),
            "{error}"
        );
        let error = parse(jobs, version, "customer.jobs").unwrap_err();
        assert!(
            error.message.contains("not a relation of `customers`"),
            "{error}"
        );
        let error = parse(jobs, version, "a.b.c").unwrap_err();
        assert!(error.message.contains("at most 2"), "{error}");
        assert!(parse(jobs, version, "customer,").is_err());
    }
}
