//! `?expand=`: the related rows of a page or of one row, read with one batched `IN (…)` query
//! per relation (chunked past `max_bound_parameters`), under the related resource's own grant,
//! and rendered as new members of each row.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::HttpRequest;
use serde_json::Value as Json;

use super::access;
use super::problem::ApiError;
use super::render::{Member, Nested, Related};
use super::AppState;
use crate::auth::Principal;
use crate::catalog::access::{FieldMask, Grant};
use crate::catalog::expand::{self as relations, Expansion, Relationship};
use crate::catalog::plan::Plan;
use crate::catalog::query::{self, Place, QueryError};
use crate::catalog::{Field, Resource};
use crate::source::{Param, Value};

/// Splits `expand` off a query string: the rest (as written) and `expand`'s value, if given.
pub fn split(query_string: &str) -> Result<(String, Option<String>), QueryError> {
    let mut rest: Vec<&str> = Vec::new();
    let mut expand = None;
    for raw in query_string.split('&').filter(|p| !p.is_empty()) {
        let pair = query::pairs(raw)?;
        match pair.into_iter().next() {
            Some((name, value)) if name == "expand" => {
                if expand.replace(value).is_some() {
                    return Err(QueryError {
                        place: Place::Query,
                        parameter: "expand".into(),
                        message: "is given more than once: name every relation in one list".into(),
                    });
                }
            }
            _ => rest.push(raw),
        }
    }
    Ok((rest.join("&"), expand))
}

/// A single row's lookup takes `expand` (when its resource has relations) and nothing else.
pub fn item_parameters(
    req: &HttpRequest,
    resource: &Resource,
) -> Result<Option<String>, QueryError> {
    let (rest, expand) = split(req.query_string())?;
    let takes = if resource.relations.is_empty() {
        "it takes none"
    } else {
        "it takes only `expand`"
    };
    match query::pairs(&rest)?.into_iter().next() {
        Some((name, _)) => Err(QueryError {
            place: Place::Query,
            parameter: name,
            message: format!("is not a parameter of a single row's lookup ({takes})"),
        }),
        None => Ok(expand),
    }
}

/// One relation to expand, resolved and authorized before anything is read.
pub struct Prepared<'a> {
    name: &'a str,
    relationship: &'a Relationship,
    parent: &'a Resource,
    related: &'a Resource,
    grant: Grant,
    nested: Vec<Prepared<'a>>,
}

/// What a request expands: the relations, and what they add to the cache key.
#[derive(Default)]
pub struct Expand<'a> {
    prepared: Vec<Prepared<'a>>,
    /// Canonical text of the expansion, for the cache key (empty without `expand`).
    pub request: String,
    /// Identity of the related grants (policies and masks), for the cache key.
    identity: String,
    /// Related resources read, whose invalidations the answer follows.
    pub depends_on: Vec<String>,
    /// Whether every related answer is what anyone without a token gets.
    shareable: bool,
}

impl<'a> Expand<'a> {
    /// Resolves `value` (`customer,operations.job`) against `resource`'s relations and
    /// authorizes each related resource for `principal`: lacking its read scope is a 403
    /// naming the relation. `mask` is the caller's mask of `resource`: a relation from a
    /// field it hides is refused.
    pub fn prepare(
        state: &'a AppState,
        resource: &'a Resource,
        principal: &Principal,
        mask: &FieldMask,
        value: Option<String>,
    ) -> Result<Self, ApiError> {
        let Some(value) = value else {
            return Ok(Self::default());
        };
        let version = state
            .catalog
            .versions
            .get(&resource.version)
            .map(|v| &v.resources)
            .ok_or_else(|| ApiError::Internal(format!("no version `{}`", resource.version)))?;
        let tree = relations::parse(resource, version, &value)?;
        let mut expand = Self {
            request: format!("|x:{}", relations::cache_key(&tree)),
            shareable: true,
            ..Self::default()
        };
        expand.prepared = expand.resolve(version, resource, principal, mask, &tree, "")?;
        Ok(expand)
    }

    fn resolve(
        &mut self,
        version: &'a indexmap::IndexMap<String, Resource>,
        parent: &'a Resource,
        principal: &Principal,
        mask: &FieldMask,
        tree: &[Expansion],
        path: &str,
    ) -> Result<Vec<Prepared<'a>>, ApiError> {
        let mut prepared = Vec::new();
        for expansion in tree {
            let Some((name, relationship)) = parent.relations.get_key_value(&expansion.relation)
            else {
                continue;
            };
            let Some(related) = version.get(&relationship.resource) else {
                continue;
            };
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if relations::hidden_by(relationship, mask) {
                return Err(QueryError {
                    place: Place::Query,
                    parameter: "expand".into(),
                    message: format!(
                        "names `{path}`, which follows `{}`, a field this token does not see",
                        parent.fields[relationship.local].name
                    ),
                }
                .into());
            }
            let grant = access::grant(related, principal).map_err(|e| match e {
                ApiError::InsufficientScope(scope, _) => ApiError::Forbidden(format!(
                    "`expand={path}` reads `{}`, which needs the scope `{scope}` this token lacks",
                    related.name
                )),
                ApiError::Forbidden(why) => {
                    ApiError::Forbidden(format!("`expand={path}` reads `{}`: {why}", related.name))
                }
                other => other,
            })?;
            if !grant.identity.is_empty() {
                self.identity
                    .push_str(&format!("x:{path}{{{}}};", grant.identity));
            }
            self.shareable &= grant.shareable;
            if related.name != parent.name && !self.depends_on.contains(&related.name) {
                self.depends_on.push(related.name.clone());
            }
            let nested = self.resolve(
                version,
                related,
                principal,
                &grant.mask,
                &expansion.nested,
                &path,
            )?;
            prepared.push(Prepared {
                name,
                relationship,
                parent,
                related,
                grant,
                nested,
            });
        }
        Ok(prepared)
    }

    /// Makes `grant` (the caller's grant of the expanded resource) stand for the related
    /// grants too, so callers that see different related rows or fields never share an entry.
    pub fn narrow(&self, grant: &mut Grant) {
        if self.prepared.is_empty() {
            return;
        }
        if !self.identity.is_empty() {
            grant.identity = format!("{}|{}", grant.identity, self.identity);
        }
        grant.shareable &= self.shareable;
    }

    /// Whether nothing is expanded.
    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty()
    }

    /// Adds to `plan` the columns the relations start from (whatever `fields=` or the mask
    /// leaves out); their positions in each row.
    pub fn read_links(&self, resource: &Resource, plan: &mut Plan) -> Vec<usize> {
        self.prepared
            .iter()
            .map(|p| relations::column_of(resource, plan, p.relationship.local))
            .collect()
    }

    /// The members each of `rows` gets: one batched read per relation (and per nested
    /// relation), `links` the positions `read_links` gave.
    pub async fn load(
        &self,
        state: &'a AppState,
        rows: &[Vec<Value>],
        links: &[usize],
    ) -> Result<Vec<Vec<Member<'a>>>, ApiError> {
        load(state, &self.prepared, rows, links).await
    }
}

/// The API value of a link field as text, the form `Field::to_legacy` reads; `None` for null.
fn link_text(field: &Field, value: &Value) -> Option<String> {
    match field.read(value) {
        Json::Null => None,
        Json::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

type Loading<'a, 'f> = Pin<Box<dyn Future<Output = Result<Vec<Vec<Member<'a>>>, ApiError>> + 'f>>;

fn load<'a: 'f, 'f>(
    state: &'a AppState,
    prepared: &'f [Prepared<'a>],
    rows: &'f [Vec<Value>],
    links: &'f [usize],
) -> Loading<'a, 'f> {
    Box::pin(async move {
        let mut members: Vec<Vec<Member<'a>>> = rows.iter().map(|_| Vec::new()).collect();
        for (p, &link) in prepared.iter().zip(links) {
            let local = &p.parent.fields[p.relationship.local];
            let keys: Vec<Option<String>> = rows
                .iter()
                .map(|row| row.get(link).and_then(|v| link_text(local, v)))
                .collect();
            let found = read_related(state, p, &keys).await?;
            for (row, key) in members.iter_mut().zip(&keys) {
                let rows = key.as_ref().and_then(|k| found.get(k));
                let value = match p.relationship.many {
                    None => Related::One(rows.and_then(|(r, _)| r.first().cloned())),
                    Some(_) => match rows {
                        Some((r, cut)) => Related::Many(r.clone(), *cut),
                        None => Related::Many(Vec::new(), false),
                    },
                };
                row.push(Member {
                    name: p.name,
                    value,
                });
            }
        }
        Ok(members)
    })
}

/// The related rows of every distinct key in `keys`, by key, with whether the list was cut.
async fn read_related<'a>(
    state: &'a AppState,
    p: &Prepared<'a>,
    keys: &[Option<String>],
) -> Result<HashMap<String, (Vec<Arc<Nested<'a>>>, bool)>, ApiError> {
    let related = p.related;
    let remote = &related.fields[p.relationship.remote];
    // Distinct keys, bound as the related field's legacy values; a key the related field
    // cannot hold matches no row.
    let mut params: Vec<(String, Param)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for key in keys.iter().flatten() {
        if seen.insert(key.as_str()) {
            if let Ok(param) = remote.to_legacy(key) {
                params.push((key.clone(), param));
            }
        }
    }
    let mut found: HashMap<String, (Vec<Arc<Nested<'a>>>, bool)> = HashMap::new();
    if params.is_empty() {
        return Ok(found);
    }
    let source = state.source(related)?;
    // Without row numbers per key (`generic`), a batch is cut at its row limit whatever the
    // keys: only a key with more than `limit` rows read is settled, the others are read again.
    let numbered = source.dialect().numbers_rows();
    let chunk = related.query_limits.max_bound_parameters.max(1);
    let nested_links: Vec<usize> = p.nested.iter().map(|n| n.relationship.local).collect();
    let limit = p.relationship.many.unwrap_or(1);
    for chunk in params.chunks(chunk) {
        let mut pending: Vec<(String, Param)> = chunk.to_vec();
        while !pending.is_empty() {
            let values = pending.iter().map(|(_, param)| param.clone()).collect();
            let (plan, remote_at, links) =
                relations::batch_plan(related, p.relationship, &p.grant, values, &nested_links)?;
            let read = source.select(plan.select.clone()).await?;
            let plan = Arc::new(plan);
            let mut counts: HashMap<String, usize> = HashMap::new();
            let keyed: Vec<(String, Vec<Value>)> = read
                .into_iter()
                .filter_map(|row| {
                    let key = row.get(remote_at).and_then(|v| link_text(remote, v))?;
                    *counts.entry(key.clone()).or_default() += 1;
                    Some((key, row))
                })
                .collect();
            // A to-one key matches one row at most: its batch is never cut.
            let cut_short =
                !numbered && p.relationship.many.is_some() && keyed.len() >= plan.select.limit;
            let settled = |key: &str| !cut_short || counts.get(key).is_some_and(|&n| n > limit);
            if cut_short && pending.iter().all(|(key, _)| !settled(key)) {
                // Nothing settled (a key read back in another spelling): keep what was read.
                pending.clear();
            }
            // The rows served, grouped by key in the order read (the related default order).
            let mut served: HashMap<&str, usize> = HashMap::new();
            let kept: Vec<(String, Vec<Value>)> = keyed
                .iter()
                .filter(|(key, _)| pending.is_empty() || settled(key))
                .filter(|(key, _)| {
                    let n = served.entry(key.as_str()).or_default();
                    *n += 1;
                    *n <= limit
                })
                .cloned()
                .collect();
            pending.retain(|(key, _)| !settled(key));
            let rows: Vec<Vec<Value>> = kept.iter().map(|(_, row)| row.clone()).collect();
            let mut nested = load(state, &p.nested, &rows, &links).await?.into_iter();
            for ((key, row), members) in kept.into_iter().zip(nested.by_ref()) {
                let cut = counts.get(&key).is_some_and(|&n| n > limit);
                let entry = found.entry(key).or_insert_with(|| (Vec::new(), cut));
                entry.0.push(Arc::new(Nested {
                    resource: related,
                    plan: plan.clone(),
                    row,
                    members,
                }));
            }
        }
    }
    Ok(found)
}
