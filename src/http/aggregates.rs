//! `GET /{v}/{resource}/aggregate`: grouped counts, sums, averages, min and max, pushed down as
//! one GROUP BY under the caller's row policies and cached like a list.

use actix_web::{HttpRequest, HttpResponse};

use super::access;
use super::problem::ApiError;
use super::render::json_body;
use super::request::resource_at;
use super::resources::cached;
use super::Current;
use crate::auth::Principal;
use crate::cache::CachedPage;
use crate::catalog::aggregate;

/// Answers an aggregate request: the list's filters, `group_by`, `count`, `sum`, `avg`, `min`,
/// `max` and `limit` (groups).
pub async fn aggregate(
    req: HttpRequest,
    state: Current,
    principal: &Principal,
) -> Result<HttpResponse, ApiError> {
    let resource = resource_at(&state, &req, 1)?;
    let grant = access::grant(resource, principal)?;
    let spec = aggregate::parse(resource, req.query_string(), &grant.mask)?;
    let request = format!("aggregate:{}", spec.cache_key());
    let load = async {
        let source = state.source(resource)?;
        let plan = aggregate::plan(resource, &spec, grant.conditions.clone(), source.dialect())?;
        let rows = source.aggregate(plan.aggregate.clone()).await?;
        let body = json_body(&aggregate::render(resource, &spec, &plan, &rows))?;
        Ok(CachedPage::new(body, None))
    };
    cached(&req, &state, resource, &grant, request, Vec::new(), load).await
}
