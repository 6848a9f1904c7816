//! Every route Portico serves, in one table: the actix registration, the dispatch of the API
//! shapes and the metric label of a request all come from it, so they cannot disagree.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use super::problem::ApiError;
use super::request::{not_served, resource_at};
use super::Current;
use super::{
    access, admin, aggregates, console, docs, feed, health, overview, procedures, resources,
    subscriptions, writes,
};
use crate::catalog::Catalog;
use crate::config::WriteOp;

/// One route: what a request path names, and so which handler answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the versions.
    Versions,
    /// Liveness.
    Healthz,
    /// Readiness.
    Readyz,
    /// The Prometheus scrape target.
    Metrics,
    /// A version's OpenAPI document.
    OpenApi,
    /// `/docs` without its slash.
    DocsRedirect,
    /// Swagger UI's page and assets.
    DocsAsset,
    /// The operator console's page.
    Console,
    /// The operator console's script and style sheet.
    ConsoleAsset,
    /// Purge of the whole cache.
    PurgeAll,
    /// Purge of one resource's cached answers.
    PurgeResource,
    /// The webhook subscriptions.
    Subscriptions,
    /// One subscription.
    Subscription,
    /// An action on one subscription.
    SubscriptionAction,
    /// Webhook deliveries.
    Deliveries,
    /// Dead deliveries.
    DeadLetters,
    /// One delivery and its attempts.
    Delivery,
    /// A delivery sent again.
    Resend,
    /// What an operator watches, in one document.
    Overview,
    /// The configuration file read again and swapped in.
    Reload,
    /// Any other path under `/admin` (a 404).
    AdminOther,
    /// A resource's rows; POST creates one.
    List,
    /// One row by key; PATCH and DELETE write it.
    Item,
    /// A resource's change events.
    Feed,
    /// A resource's grouped counts, sums, min and max.
    Aggregate,
    /// The child rows of one row.
    Children,
    /// A stored procedure.
    Procedure,
    /// A path no route matches (a 404).
    Other,
}

/// Who matches a route's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matcher {
    /// The actix router, at the top level.
    Router,
    /// The actix router, within the `/admin` scope.
    Admin,
    /// [`api_route`], from the default service.
    Api,
}

/// A route, the pattern the router matches and the label its metrics carry.
struct Shape {
    route: Route,
    /// The actix pattern (for `Matcher::Api`, the shape `api_route` recognizes).
    path: &'static str,
    /// The metric label: the pattern without the tail's regular expression.
    label: &'static str,
    matcher: Matcher,
}

const fn shape(route: Route, path: &'static str, matcher: Matcher) -> Shape {
    Shape {
        route,
        path,
        label: path,
        matcher,
    }
}

/// The prefix of the admin routes: a scope, so other paths skip them with one comparison.
const ADMIN: &str = "/admin";

/// Every route, in the order of [`Route`] (so a route finds its entry by index).
const ROUTES: [Shape; 28] = [
    shape(Route::Versions, "/", Matcher::Router),
    shape(Route::Healthz, "/healthz", Matcher::Router),
    shape(Route::Readyz, "/readyz", Matcher::Router),
    shape(Route::Metrics, "/metrics", Matcher::Router),
    shape(Route::OpenApi, "/openapi/{file}", Matcher::Router),
    shape(Route::DocsRedirect, "/docs", Matcher::Router),
    Shape {
        route: Route::DocsAsset,
        path: "/docs/{file:.*}",
        label: "/docs/{file}",
        matcher: Matcher::Router,
    },
    shape(Route::Console, "/console", Matcher::Router),
    shape(Route::ConsoleAsset, "/console/{file}", Matcher::Router),
    shape(Route::PurgeAll, "/admin/cache", Matcher::Admin),
    shape(
        Route::PurgeResource,
        "/admin/cache/{resource}",
        Matcher::Admin,
    ),
    shape(Route::Subscriptions, "/admin/subscriptions", Matcher::Admin),
    shape(
        Route::Subscription,
        "/admin/subscriptions/{name}",
        Matcher::Admin,
    ),
    shape(
        Route::SubscriptionAction,
        "/admin/subscriptions/{name}/{action}",
        Matcher::Admin,
    ),
    shape(Route::Deliveries, "/admin/deliveries", Matcher::Admin),
    shape(Route::DeadLetters, "/admin/dead-letters", Matcher::Admin),
    shape(Route::Delivery, "/admin/deliveries/{id}", Matcher::Admin),
    shape(
        Route::Resend,
        "/admin/deliveries/{id}/resend",
        Matcher::Admin,
    ),
    shape(Route::Overview, "/admin/overview", Matcher::Admin),
    shape(Route::Reload, "/admin/reload", Matcher::Admin),
    shape(Route::AdminOther, "/admin/{other}", Matcher::Admin),
    shape(Route::List, "/{version}/{resource}", Matcher::Api),
    shape(Route::Item, "/{version}/{resource}/{key}", Matcher::Api),
    shape(Route::Feed, "/{version}/{resource}/changes", Matcher::Api),
    shape(
        Route::Aggregate,
        "/{version}/{resource}/aggregate",
        Matcher::Api,
    ),
    shape(
        Route::Children,
        "/{version}/{resource}/{key}/{child}",
        Matcher::Api,
    ),
    shape(
        Route::Procedure,
        "/{version}/procedures/{procedure}",
        Matcher::Api,
    ),
    shape(Route::Other, "/{other}", Matcher::Api),
];

impl Route {
    /// The label of this route's metrics: its pattern, never a segment of a request's path.
    pub fn label(self) -> &'static str {
        ROUTES[self as usize].label
    }

    /// The route of a request: `routed` is the path the actix router matches (percent-decoded
    /// where that is safe), `raw` the path as sent, which the API shapes are read from;
    /// `serves` says whether a version's resource serves a segment (see [`serves`]).
    pub fn of(routed: &str, raw: &str, serves: impl Fn(&str, &str, &str) -> bool) -> Route {
        let admin = routed == ADMIN || routed.starts_with("/admin/");
        let matcher = if admin {
            Matcher::Admin
        } else {
            Matcher::Router
        };
        // Most requests are API shapes: a first segment no service route starts with skips the
        // table (one comparison per route instead of matching every pattern).
        let first = first_segment(routed);
        let found = ROUTES
            .iter()
            .filter(|s| s.matcher == matcher && s.route != Route::AdminOther)
            .filter(|s| {
                let starts = first_segment(s.path);
                admin || starts == first || starts.starts_with('{')
            })
            .find(|s| matches(s.path, routed));
        match found {
            Some(shape) => shape.route,
            None if admin => Route::AdminOther,
            None => api_route(raw, serves),
        }
    }
}

/// The first segment of a path (`""` for `/`).
fn first_segment(path: &str) -> &str {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').map_or(path, |(first, _)| first)
}

/// Whether `path` has the shape of the actix `pattern`: literal segments equal, a `{name}`
/// segment any non-empty one, a `{name:.*}` tail whatever is left. No regular expression and
/// no allocation: this runs for every request.
fn matches(pattern: &str, path: &str) -> bool {
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(_)) if w.starts_with('{') && w.ends_with(":.*}") => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The API shape of a raw path, `/{version}/{resource}[/{key}[/{child}]]`, by its number of
/// segments: one split instead of the router's regular expressions, a measurable share of a
/// cached answer. `/v1/jobs/` names a row with an empty key, which no table has (it is not
/// the list). `changes` and `aggregate` are the feed and the aggregates of a resource that
/// serves them (`serves`); a key otherwise.
fn api_route(raw: &str, serves: impl Fn(&str, &str, &str) -> bool) -> Route {
    if raw.ends_with('/') {
        return Route::Other;
    }
    let mut segments = raw.split('/').filter(|s| !s.is_empty());
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(_), Some(_), None, _, _) => Route::List,
        (Some(_), Some("procedures"), Some(_), None, _) => Route::Procedure,
        (Some(version), Some(resource), Some(segment @ ("changes" | "aggregate")), None, _)
            if serves(version, resource, segment) =>
        {
            if segment == "changes" {
                Route::Feed
            } else {
                Route::Aggregate
            }
        }
        (Some(_), Some(_), Some(_), None, _) => Route::Item,
        (Some(_), Some(_), Some(_), Some(_), None) => Route::Children,
        _ => Route::Other,
    }
}

/// Whether `resource` of `version` serves `segment` as a path of its own rather than a key:
/// `changes` when it has a change feed, `aggregate` when it serves aggregates.
pub fn serves(catalog: &Catalog, version: &str, resource: &str, segment: &str) -> bool {
    catalog
        .resource(version, resource)
        .is_some_and(|r| match segment {
            "changes" => r.changes,
            "aggregate" => r.aggregates,
            _ => false,
        })
}

/// Registers every route the actix router matches; the API shapes go to [`dispatch`].
pub fn register(cfg: &mut web::ServiceConfig) {
    let mut admin = web::scope(ADMIN);
    for shape in &ROUTES {
        let Some(resource) = resource(shape) else {
            continue;
        };
        match shape.matcher {
            Matcher::Admin => admin = admin.service(resource),
            _ => {
                cfg.service(resource);
            }
        }
    }
    cfg.service(admin.default_service(web::to(not_found)))
        .default_service(web::to(dispatch));
}

/// The actix resource of a route the router matches, with its handlers.
fn resource(shape: &Shape) -> Option<actix_web::Resource> {
    let path = match shape.matcher {
        Matcher::Router => shape.path,
        Matcher::Admin => shape.path.strip_prefix(ADMIN)?,
        Matcher::Api => return None,
    };
    let resource = match shape.route {
        Route::Versions => read_only(path, docs::versions),
        Route::Healthz => read_only(path, health::healthz),
        Route::Readyz => read_only(path, health::readyz),
        Route::Metrics => read_only(path, admin::metrics),
        Route::OpenApi => read_only(path, docs::openapi_document),
        Route::DocsRedirect => read_only(path, docs::redirect),
        Route::DocsAsset => read_only(path, docs::asset),
        Route::Console => read_only(path, console::page),
        Route::ConsoleAsset => read_only(path, console::asset),
        Route::PurgeAll => web::resource(path)
            .route(web::delete().to(admin::purge_all))
            .default_service(web::to(method_not_allowed)),
        Route::PurgeResource => web::resource(path)
            .route(web::delete().to(admin::purge_resource))
            .default_service(web::to(method_not_allowed)),
        Route::Subscriptions => web::resource(path)
            .route(web::get().to(subscriptions::list))
            .route(web::post().to(subscriptions::create))
            .default_service(web::to(|| allow("GET, POST"))),
        Route::Subscription => web::resource(path)
            .route(web::get().to(subscriptions::get))
            .route(web::delete().to(subscriptions::delete))
            .default_service(web::to(|| allow("GET, DELETE"))),
        Route::SubscriptionAction => web::resource(path)
            .route(web::post().to(subscriptions::act))
            .default_service(web::to(|| allow("POST"))),
        Route::Deliveries | Route::DeadLetters => web::resource(path)
            .route(web::get().to(subscriptions::deliveries))
            .default_service(web::to(|| allow("GET"))),
        Route::Delivery => web::resource(path)
            .route(web::get().to(subscriptions::delivery))
            .default_service(web::to(|| allow("GET"))),
        Route::Resend => web::resource(path)
            .route(web::post().to(subscriptions::resend))
            .default_service(web::to(|| allow("POST"))),
        Route::Overview => web::resource(path)
            .route(web::get().to(overview::overview))
            .default_service(web::to(|| allow("GET"))),
        Route::Reload => web::resource(path)
            .route(web::post().to(super::live::reload))
            .default_service(web::to(|| allow("POST"))),
        // The scope's default service.
        Route::AdminOther => return None,
        Route::List
        | Route::Item
        | Route::Feed
        | Route::Aggregate
        | Route::Children
        | Route::Procedure
        | Route::Other => return None,
    };
    Some(resource)
}

/// Answers the API shapes: GET and HEAD read (actix drops the body of a HEAD answer); POST,
/// PATCH and DELETE write where the resource takes writes; other methods get 405 with `Allow`.
async fn dispatch(
    req: HttpRequest,
    state: Current,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let route = api_route(req.uri().path(), |v, r, s| serves(&state.catalog, v, r, s));
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    match route {
        Route::Procedure => procedures::call(req, state, payload).await,
        Route::List | Route::Item | Route::Feed | Route::Aggregate | Route::Children if reads => {
            let principal = access::principal(&req, &state).await?;
            match route {
                Route::List => resources::list(req, state, &principal).await,
                Route::Aggregate => aggregates::aggregate(req, state, &principal).await,
                Route::Item => resources::get(req, state, &principal).await,
                Route::Feed => {
                    let resource = resource_at(&state, &req, 1)?;
                    feed::feed(&req, &state, resource, &principal).await
                }
                _ => resources::children(req, state, &principal).await,
            }
        }
        Route::List | Route::Item | Route::Feed | Route::Aggregate | Route::Children => {
            write(req, state, payload, route).await
        }
        _ => Err(not_served(&req)),
    }
}

/// A method other than GET and HEAD on an API shape: the write it names, or 405.
async fn write(
    req: HttpRequest,
    state: Current,
    payload: web::Payload,
    route: Route,
) -> Result<HttpResponse, ApiError> {
    let op = match (route, req.method()) {
        (Route::List, &Method::POST) => Some(WriteOp::Create),
        (Route::Item, &Method::PATCH) => Some(WriteOp::Update),
        (Route::Item, &Method::DELETE) => Some(WriteOp::Delete),
        _ => None,
    };
    let resource = resource_at(&state, &req, 1)?;
    match (route, op) {
        (Route::Feed | Route::Aggregate, _) => Err(ApiError::MethodNotAllowed("GET, HEAD".into())),
        (_, Some(op)) => writes::write(req.clone(), state.clone(), payload, resource, op).await,
        (Route::Children, None) => {
            // Only a nested list that exists takes GET.
            let child = resource_at(&state, &req, 3)?;
            match &child.parent {
                Some((parent, _)) if *parent == resource.name => {
                    Err(ApiError::MethodNotAllowed("GET, HEAD".into()))
                }
                _ => Err(not_served(&req)),
            }
        }
        (route, None) => Err(ApiError::MethodNotAllowed(writes::allowed(
            resource,
            route == Route::Item,
        ))),
    }
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    allow("DELETE").await
}

/// A path answered to GET and HEAD; any other method is a 405 naming them.
fn read_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| allow("GET, HEAD")))
}

async fn allow(methods: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(methods.into()))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(not_served(&req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::dev::ResourceDef;

    fn jobs_have_a_feed(version: &str, resource: &str, _segment: &str) -> bool {
        version == "v1" && resource == "jobs"
    }

    /// A path of `pattern`'s shape: each parameter replaced by a plausible segment.
    fn example(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|segment| match segment {
                "{version}" => "v1",
                "{resource}" => "jobs",
                s if s.ends_with(":.*}") => "swagger-ui/index.css",
                s if s.starts_with('{') => "x",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn the_table_is_in_the_order_of_the_routes() {
        for (index, shape) in ROUTES.iter().enumerate() {
            assert_eq!(shape.route as usize, index, "{:?}", shape.route);
            assert_eq!(
                shape.label,
                shape.path.replace(":.*}", "}"),
                "the label is the pattern"
            );
        }
    }

    #[test]
    fn every_route_gets_the_label_of_its_own_pattern() {
        for shape in &ROUTES {
            let path = example(shape.path);
            let route = Route::of(&path, &path, jobs_have_a_feed);
            assert_eq!(route, shape.route, "{path}");
            assert_eq!(route.label(), shape.label, "{path}");
        }
    }

    /// The router's own matching and ours agree on every pattern it registers.
    #[test]
    fn route_shapes_match_what_the_router_matches() {
        let paths = [
            "/",
            "//",
            "/healthz",
            "/healthz/",
            "//healthz",
            "/metrics/x",
            "/openapi",
            "/openapi/",
            "/openapi/v1.json",
            "/openapi/v1.json/x",
            "/docs",
            "/docs/",
            "/docs/index.html",
            "/docs/a/b.css",
            "/docsx",
            "/admin/cache",
            "/admin/cache/",
            "/admin/cache/jobs",
            "/admin/cache/jobs/x",
            "/admin/subscriptions/a/pause",
            "/admin/subscriptions//pause",
            "/admin/deliveries/7/resend",
            "/admin/dead-letters",
            "/admin/overview",
            "/console",
            "/console/",
            "/console/console.js",
            "/console/a/b.js",
            "/v1/jobs",
        ];
        for shape in ROUTES.iter().filter(|s| s.matcher != Matcher::Api) {
            if shape.route == Route::AdminOther {
                continue;
            }
            let def = ResourceDef::new(shape.path);
            for path in paths {
                assert_eq!(
                    matches(shape.path, path),
                    def.is_match(path),
                    "{} on {path}",
                    shape.path
                );
            }
        }
        let scope = ResourceDef::prefix(ADMIN);
        for path in ["/admin", "/admin/", "/admin/x", "/adminx", "/x/admin"] {
            let ours = path == ADMIN || path.starts_with("/admin/");
            assert_eq!(ours, scope.is_match(path), "{path}");
        }
    }

    #[test]
    fn paths_no_route_matches_get_a_bounded_label() {
        let of = |path: &str| Route::of(path, path, jobs_have_a_feed).label();
        assert_eq!(of("/healthz"), "/healthz");
        assert_eq!(of("/v1/jobs"), "/{version}/{resource}");
        assert_eq!(of("/v1/jobs/J1"), "/{version}/{resource}/{key}");
        assert_eq!(
            of("/v1/jobs/J1/operations"),
            "/{version}/{resource}/{key}/{child}"
        );
        assert_eq!(of("/admin/cache/jobs"), "/admin/cache/{resource}");
        assert_eq!(of("/a/b/c/d/e/f"), "/{other}");
        assert_eq!(of("/v1"), "/{other}");
        assert_eq!(of("/v1/jobs/"), "/{other}");
        assert_eq!(of("/admin/x/y/z"), "/admin/{other}");
        assert_eq!(of("/admin"), "/admin/{other}");
        assert_eq!(of("/openapi/v1.json"), "/openapi/{file}");
        assert_eq!(of("/docs/index.html"), "/docs/{file}");
        assert_eq!(of("/admin/subscriptions/x"), "/admin/subscriptions/{name}");
        assert_eq!(of("/admin/deliveries"), "/admin/deliveries");
        assert_eq!(of("/admin/overview"), "/admin/overview");
        assert_eq!(of("/console"), "/console");
        assert_eq!(of("/console/console.js"), "/console/{file}");
        // Without a feed, `changes` is a key.
        assert_eq!(of("/v1/tickets/changes"), "/{version}/{resource}/{key}");
        assert_eq!(of("/v1/jobs/changes"), "/{version}/{resource}/changes");
        assert_eq!(of("/v1/jobs/aggregate"), "/{version}/{resource}/aggregate");
        // Without aggregates, `aggregate` is a key.
        assert_eq!(of("/v1/tickets/aggregate"), "/{version}/{resource}/{key}");
        assert_eq!(
            of("/v1/procedures/close"),
            "/{version}/procedures/{procedure}"
        );
    }
}
