//! `GET /{v}/{resource}`, `GET /{v}/{resource}/{key}` and `GET /{v}/{parent}/{key}/{child}`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::expand::{self, Expand};
use super::export::{self, Format};
use super::problem::ApiError;
use super::render::{render_page, render_page_expanded, render_row, render_row_expanded};
use super::request::{key_plan, not_served, raw_segment, resource_at, split_key};
use super::{access, compress};
use super::{AppState, Current};
use crate::auth::Principal;
use crate::cache::{none_match, variant_tag, CacheKey, CachedPage, Freshness, Lifetime};
use crate::catalog::access::Grant;
use crate::catalog::query::{self, QueryError};
use crate::catalog::{plan, Resource};
use crate::source::select::Condition;
use crate::source::Rows;

/// Lists a resource: filters, sort, fields, limit and keyset cursor; with `Accept:
/// application/x-ndjson` or `text/csv`, every row as an export (`export.rs`).
pub async fn list(
    req: HttpRequest,
    state: Current,
    principal: &Principal,
) -> Result<HttpResponse, ApiError> {
    let resource = resource_at(&state, &req, 1)?;
    let mut grant = access::grant(resource, principal)?;
    let format = export::negotiate(&req)?;
    let (query_string, expand) = expand::split(req.query_string())?;
    let spec = query::parse(resource, &query_string, &grant.mask)?;
    if format != Format::Json {
        export::without_expand(expand.as_deref())?;
        let plan = plan::list(resource, &spec, grant.conditions.clone(), &grant.mask, "")?;
        return export::stream(&state, resource, plan, format).await;
    }
    let expand = Expand::prepare(&state, resource, principal, &grant.mask, expand)?;
    expand.narrow(&mut grant);
    let request = format!("list:{}{}", spec.cache_key(), expand.request);
    let load = async {
        let plan = plan::list(resource, &spec, grant.conditions.clone(), &grant.mask, "")?;
        load_page(&state, resource, plan, &expand, spec.count).await
    };
    let depends_on = expand.depends_on.clone();
    let response = cached(&req, &state, resource, &grant, request, depends_on, load).await?;
    Ok(varies_by_accept(response))
}

/// A list answers by `Accept` (JSON or an export): shared caches must key on it. One `Vary`
/// header: the CORS layer keeps only the first and would drop a second.
fn varies_by_accept(mut response: HttpResponse) -> HttpResponse {
    compress::merge_vary(response.headers_mut(), Some("Accept"));
    response
}

/// One row by key; composite keys are written `a,b` with each part percent-encoded.
/// A row a policy hides is a 404, exactly like a missing one. It takes no query parameter but
/// `expand`; with it, the ETag is the body's (the row's version is its ETag without).
pub async fn get(
    req: HttpRequest,
    state: Current,
    principal: &Principal,
) -> Result<HttpResponse, ApiError> {
    let resource = resource_at(&state, &req, 1)?;
    let mut grant = access::grant(resource, principal)?;
    let expand = expand::item_parameters(&req, resource)?;
    let expand = Expand::prepare(&state, resource, principal, &grant.mask, expand)?;
    expand.narrow(&mut grant);
    let key = raw_segment(&req, 2);
    let parts = split_key(key)?;
    let request = format!("item:{}{}", key_request(resource, &parts)?, expand.request);
    let load = async {
        let mut plan = key_plan(resource, &parts, &grant)?;
        let links = expand.read_links(resource, &mut plan);
        let row = fetch_one(&state, resource, &plan, key).await?;
        if expand.is_empty() {
            let body = render_row(resource, &plan, &row)?;
            // The ETag is the row's version, the one `If-Match` on a write is compared with.
            let etag = crate::catalog::write::row_etag(resource, &plan, &row);
            return Ok(CachedPage::with_etag(body, etag, None));
        }
        let rows = [row];
        let members = expand.load(&state, &rows, &links).await?;
        let members = members.first().map_or(&[][..], Vec::as_slice);
        // The related rows are part of this representation: its ETag is the body's.
        let body = render_row_expanded(resource, &plan, &rows[0], members)?;
        Ok(CachedPage::new(body, None))
    };
    let depends_on = expand.depends_on.clone();
    cached(&req, &state, resource, &grant, request, depends_on, load).await
}

/// The cache's name for a lookup by key: the key's legacy values, so every spelling of one
/// key (`10`, `010`, `+10`, `%31%30`, trailing blanks of a `char(n)`) shares one entry.
fn key_request(resource: &Resource, parts: &[String]) -> Result<String, QueryError> {
    let mut key = String::with_capacity(24);
    for condition in plan::key_conditions(resource, parts)? {
        if let Condition::Compare { param, .. } = condition {
            query::push_key_value(&mut key, &param.value);
        }
    }
    Ok(key)
}

/// Lists the child rows of one parent row (404 when the parent row does not exist or is
/// hidden from the caller); the policies of both resources apply.
pub async fn children(
    req: HttpRequest,
    state: Current,
    principal: &Principal,
) -> Result<HttpResponse, ApiError> {
    let parent = resource_at(&state, &req, 1)?;
    let child = resource_at(&state, &req, 3)?;
    let Some((parent_name, link)) = &child.parent else {
        return Err(not_served(&req));
    };
    if *parent_name != parent.name {
        return Err(not_served(&req));
    }
    let parent_grant = access::grant(parent, principal)?;
    let mut grant = access::grant(child, principal)?;
    if parent_grant.is_restricted() {
        // Whether the parent row is visible depends on the caller too.
        grant.identity = format!("{}|{}", parent_grant.identity, grant.identity);
    }
    grant.shareable &= parent_grant.shareable;
    let key = raw_segment(&req, 2);
    let parts = split_key(key)?;
    let format = export::negotiate(&req)?;
    let (query_string, expand) = expand::split(req.query_string())?;
    let spec = query::parse(child, &query_string, &grant.mask)?;
    if format != Format::Json {
        export::without_expand(expand.as_deref())?;
    }
    let expand = Expand::prepare(&state, child, principal, &grant.mask, expand)?;
    expand.narrow(&mut grant);
    let request = format!(
        "under:{}|{}{}",
        key_request(parent, &parts)?,
        spec.cache_key(),
        expand.request
    );
    // The parent row must be visible before any child row is read.
    let planned = async {
        let parent_plan = key_plan(parent, &parts, &parent_grant)?;
        let field = &child.fields[*link];
        let param = field
            .to_legacy(parts.first().map(String::as_str).unwrap_or_default())
            .map_err(|m| QueryError {
                place: crate::catalog::query::Place::Path,
                parameter: parent
                    .key
                    .first()
                    .map_or("key".into(), |&k| parent.fields[k].name.clone()),
                message: m,
            })?;
        let by_parent = Condition::Compare {
            column: field.column.clone(),
            op: crate::source::select::CmpOp::Eq,
            param,
        };
        let mut conditions = grant.conditions.clone();
        conditions.push(by_parent);
        let within = format!("{}:{}", parent.name, parts.join(","));
        let plan = plan::list(child, &spec, conditions, &grant.mask, &within)?;
        fetch_one(&state, parent, &parent_plan, key).await?;
        Ok::<_, ApiError>(plan)
    };
    if format != Format::Json {
        let plan = planned.await?;
        return export::stream(&state, child, plan, format).await;
    }
    let load = async { load_page(&state, child, planned.await?, &expand, spec.count).await };
    let depends_on = expand.depends_on.clone();
    let response = cached(&req, &state, child, &grant, request, depends_on, load).await?;
    Ok(varies_by_accept(response))
}

/// Answers through the response cache, with ETag, `If-None-Match` and `Cache-Control`.
/// The key is the parsed request (`request`: never the raw URL, so spellings of one request
/// share an entry) and the grant's identity, so principals that see different rows or fields
/// never share an entry. `depends_on` names the other resources the answer read.
pub(super) async fn cached(
    req: &HttpRequest,
    state: &AppState,
    resource: &Resource,
    grant: &Grant,
    request: String,
    depends_on: Vec<String>,
    load: impl std::future::Future<Output = Result<CachedPage, ApiError>>,
) -> Result<HttpResponse, ApiError> {
    let epoch = std::iter::once(&resource.name)
        .chain(&depends_on)
        .filter_map(|name| state.cache_epochs.get(name).copied())
        .max()
        .unwrap_or(0);
    let key = CacheKey {
        resource: resource.name.clone(),
        version: resource.version.clone(),
        request,
        identity: grant.identity.clone(),
        depends_on,
        epoch,
    };
    let lifetime = Lifetime {
        ttl: resource.cache_ttl,
        stale_if_error: resource.stale_if_error,
    };
    let (page, freshness) = state
        .cache
        .get_or_load(key.clone(), lifetime, wants_fresh(req), load)
        .await?;
    // Only what a caller without a token gets may go to shared caches.
    let cache_control = match (resource.cache_ttl.is_zero(), grant.shareable) {
        (true, true) => "no-cache".to_string(),
        (true, false) => "private, no-cache".to_string(),
        (false, true) => format!("public, max-age={}", resource.cache_ttl.as_secs()),
        (false, false) => format!("private, max-age={}", resource.cache_ttl.as_secs()),
    };
    // A variant of any coding answers `If-None-Match` for the page it was made of.
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| none_match(tags, &page.etag));
    let negotiated = compress::negotiated(req).filter(|n| n.compressible(page.body.len()));
    let mut coding = negotiated.and_then(|n| n.coding);
    // The body in that coding, compressed once and kept in the cache entry (a 304 needs
    // only its tag).
    let mut encoded = None;
    if let (Some(chosen), false) = (coding, not_modified) {
        match state.cache.encoded(&key, &page, chosen).await {
            Ok(body) => encoded = Some(body),
            Err(e) => {
                // The compression layer compresses this answer itself.
                tracing::warn!(error = %e, "serving a cached answer uncompressed");
                coding = None;
            }
        }
    }
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    let etag = match coding {
        Some(coding) => variant_tag(&page.etag, coding),
        None => page.etag.clone(),
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control));
    // The same URL may answer differently with a token, and in another coding.
    let vary: Vec<&str> = [
        resource.access.anonymous.then_some("Authorization"),
        negotiated.map(|_| "Accept-Encoding"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !vary.is_empty() {
        response.insert_header((header::VARY, vary.join(", ")));
    }
    if freshness == Freshness::Stale {
        response.insert_header((header::WARNING, "110 - \"Response is Stale\""));
    }
    if let Some(cursor) = &page.next_cursor {
        response.insert_header((header::LINK, next_link(req, cursor)));
    }
    if not_modified {
        return Ok(response.finish());
    }
    response.content_type("application/json");
    Ok(match (coding, encoded) {
        (Some(coding), Some(body)) => response
            .insert_header(compress::content_encoding(coding))
            .body(body),
        _ => response.body(page.body.clone()),
    })
}

/// A client's `Cache-Control: no-cache` (or `max-age=0`, or `Pragma: no-cache`) skips the cache.
fn wants_fresh(req: &HttpRequest) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case(token))
    };
    has(header::CACHE_CONTROL, "no-cache")
        || has(header::CACHE_CONTROL, "max-age=0")
        || has(header::PRAGMA, "no-cache")
}

fn next_link(req: &HttpRequest, cursor: &str) -> String {
    let mut query: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
        .collect();
    let cursor_pair = format!("cursor={cursor}");
    query.push(&cursor_pair);
    format!("<{}?{}>; rel=\"next\"", req.path(), query.join("&"))
}

async fn run(state: &AppState, resource: &Resource, plan: &plan::Plan) -> Result<Rows, ApiError> {
    let source = state.source(resource)?;
    Ok(source.select(plan.select.clone()).await?)
}

async fn fetch_one(
    state: &AppState,
    resource: &Resource,
    plan: &plan::Plan,
    raw_key: &str,
) -> Result<Vec<crate::source::Value>, ApiError> {
    let rows = run(state, resource, plan).await?;
    rows.into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no {} with key `{raw_key}`", resource.name)))
}

async fn load_page(
    state: &AppState,
    resource: &Resource,
    mut plan: plan::Plan,
    expand: &Expand<'_>,
    count: Option<query::CountMode>,
) -> Result<CachedPage, ApiError> {
    let links = expand.read_links(resource, &mut plan);
    let plan = &plan;
    let rows = run(state, resource, plan).await?;
    let total = match count {
        None => None,
        // One COUNT(*) of what the page's filters and policies let through, cursor aside.
        Some(mode) => Some(
            state
                .source(resource)?
                .count(plan.select.clone(), mode == query::CountMode::Estimated)
                .await?,
        ),
    };
    let more = rows.len() > plan.limit;
    let page = &rows[..rows.len().min(plan.limit)];
    let next_cursor = match (more, page.last()) {
        (true, Some(last)) => Some(
            crate::catalog::cursor::Cursor {
                sort: plan.signature.clone(),
                listing: Some(plan.listing.clone()),
                values: plan
                    .order_positions
                    .iter()
                    .map(|&p| last[p].clone())
                    .collect(),
            }
            .encode(),
        ),
        _ => None,
    };
    let body = if expand.is_empty() {
        render_page(resource, plan, page, next_cursor.clone(), total)?
    } else {
        let members = expand.load(state, page, &links).await?;
        render_page_expanded(resource, plan, page, next_cursor.clone(), total, &members)?
    };
    Ok(CachedPage::new(body, next_cursor))
}
