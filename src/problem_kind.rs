//! The kinds of problem Portico answers with (RFC 9457 `type`s): one table, read by the HTTP
//! error mapping (`http::problem`) and by the OpenAPI document's reusable responses. A leaf: it
//! imports nothing else from the crate, so `openapi` need not import `http`.

/// One kind of problem: what its responses say, and how the OpenAPI document describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemKind {
    /// Last segment of the `type` URI: `not-found` is `/problems/not-found`.
    pub slug: &'static str,
    /// HTTP status.
    pub status: u16,
    /// `title` of the problem body.
    pub title: &'static str,
    /// When it happens (the OpenAPI response's description, for a documented kind).
    pub description: &'static str,
    /// A typical `detail`.
    pub example: &'static str,
    /// Name of the reusable OpenAPI response (`components.responses`) that documents this
    /// kind; several kinds share a status, and one of each such group is documented.
    pub response: Option<&'static str>,
}

impl ProblemKind {
    /// The `type` URI reference (`/problems/not-found`).
    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.slug)
    }

    /// The kind an OpenAPI response `name` documents.
    pub fn documented_by(name: &str) -> Option<&'static ProblemKind> {
        ALL.iter().copied().find(|k| k.response == Some(name))
    }

    /// The kinds with a reusable OpenAPI response, with its name.
    pub fn documented() -> impl Iterator<Item = (&'static str, &'static ProblemKind)> {
        ALL.iter()
            .copied()
            .filter_map(|k| k.response.map(|name| (name, k)))
    }
}

/// A query parameter or key is wrong.
pub const BAD_PARAMETER: ProblemKind = ProblemKind {
    slug: "bad-parameter",
    status: 400,
    title: "Invalid request parameter",
    description: "A query parameter or key is wrong; `parameter` names it.",
    example: "query parameter `limit` must be between 1 and 500",
    response: Some("BadParameter"),
};

/// More than one `Authorization` header.
pub const INVALID_REQUEST: ProblemKind = ProblemKind {
    slug: "invalid-request",
    status: 400,
    title: "The request is ambiguous",
    description: "More than one `Authorization` header: which one counts would be a guess.",
    example: "send one Authorization header, not several",
    response: None,
};

/// The body is not well-formed JSON.
pub const MALFORMED_BODY: ProblemKind = ProblemKind {
    slug: "malformed-body",
    status: 400,
    title: "The request body is not well-formed JSON",
    description: "The body is not well-formed JSON, or an object names a member twice.",
    example: "the body is not well-formed JSON (line 1, column 2)",
    response: None,
};

/// No token where one is needed, or one that fails verification.
pub const UNAUTHORIZED: ProblemKind = ProblemKind {
    slug: "unauthorized",
    status: 401,
    title: "Authentication required",
    description: "No bearer token, or one that fails verification.",
    example: "the token has expired",
    response: Some("Unauthorized"),
};

/// The token lacks the scope the operation needs.
pub const INSUFFICIENT_SCOPE: ProblemKind = ProblemKind {
    slug: "insufficient-scope",
    status: 403,
    title: "The token lacks a scope",
    description: "The token lacks the scope, or a claim a row policy needs.",
    example: "the token lacks the scope `jobs:read`",
    response: Some("Forbidden"),
};

/// The caller may not do this (a row policy needs a claim the token lacks, for one).
pub const FORBIDDEN: ProblemKind = ProblemKind {
    slug: "forbidden",
    status: 403,
    title: "Forbidden",
    description: "A row policy needs a claim the token lacks, or a write would leave the \
                  caller's rows; never unfiltered rows instead.",
    example: "the written customers would be outside the rows this token may see; nothing was \
              written",
    response: None,
};

/// No such version, resource or row.
pub const NOT_FOUND: ProblemKind = ProblemKind {
    slug: "not-found",
    status: 404,
    title: "Not found",
    description: "No such row, or one the caller's row policy hides.",
    example: "no jobs with key `J000042`",
    response: Some("NotFound"),
};

/// The route exists, but not for this method.
pub const METHOD_NOT_ALLOWED: ProblemKind = ProblemKind {
    slug: "method-not-allowed",
    status: 405,
    title: "Method not allowed",
    description: "The path does not take this method; `Allow` lists those it takes.",
    example: "this resource does not accept that method",
    response: Some("MethodNotAllowed"),
};

/// No representation the request's `Accept` takes.
pub const NOT_ACCEPTABLE: ProblemKind = ProblemKind {
    slug: "not-acceptable",
    status: 406,
    title: "No acceptable representation",
    description: "The `Accept` header takes none of the media types this path produces (a list: \
                  `application/json`, `application/x-ndjson`, `text/csv`).",
    example: "this list is served as application/json, application/x-ndjson or text/csv; \
              `Accept: application/xml` takes none of them",
    response: Some("NotAcceptable"),
};

/// The body did not arrive in time.
pub const REQUEST_TIMEOUT: ProblemKind = ProblemKind {
    slug: "request-timeout",
    status: 408,
    title: "The request body arrived too slowly",
    description: "The request body did not arrive within the server's `body_timeout`; nothing \
                  was written.",
    example: "the request body did not arrive within 10 s",
    response: Some("RequestTimeout"),
};

/// The write conflicts with the database's constraints or another request.
pub const CONFLICT: ProblemKind = ProblemKind {
    slug: "conflict",
    status: 409,
    title: "The write conflicts with the data",
    description: "The write breaks a rule of the database (a unique key, a foreign key), or a \
                  request with the same Idempotency-Key is still running; nothing was written.",
    example: "the write breaks the database's unique constraint `customers_pkey`; nothing was \
              written",
    response: Some("Conflict"),
};

/// `If-Match` names a version the row no longer has.
pub const PRECONDITION_FAILED: ProblemKind = ProblemKind {
    slug: "precondition-failed",
    status: 412,
    title: "The row changed since it was read",
    description: "The row changed since the ETag sent as If-Match was read; nothing was written.",
    example: "the row changed since its ETag was read; read customers again and retry",
    response: Some("PreconditionFailed"),
};

/// A pull-feed cursor points into history the state store no longer keeps.
pub const CURSOR_EXPIRED: ProblemKind = ProblemKind {
    slug: "cursor-expired",
    status: 410,
    title: "The cursor points into pruned history",
    description: "Events after this `after` cursor were pruned (`[state] event_retention`), so \
                  the feed cannot resume from it without a gap; read the resource again, then \
                  follow the feed from `after=0`, the oldest event kept.",
    example: "the events of jobs after cursor 1042 were pruned (events are kept 3 days); read \
              jobs again, then follow its changes from after=0, the oldest event kept (cursor \
              1187 on)",
    response: Some("CursorExpired"),
};

/// The body is over the limit.
pub const PAYLOAD_TOO_LARGE: ProblemKind = ProblemKind {
    slug: "payload-too-large",
    status: 413,
    title: "The request body is too large",
    description: "The request body is over 64 KiB.",
    example: "the request body is over 65536 bytes",
    response: Some("PayloadTooLarge"),
};

/// The body is not a media type the operation takes.
pub const UNSUPPORTED_MEDIA_TYPE: ProblemKind = ProblemKind {
    slug: "unsupported-media-type",
    status: 415,
    title: "Unsupported media type",
    description: "The request body is not JSON.",
    example: "send the body as application/json",
    response: Some("UnsupportedMediaType"),
};

/// The body breaks the resource's rules.
pub const VALIDATION: ProblemKind = ProblemKind {
    slug: "validation",
    status: 422,
    title: "The request body is invalid",
    description: "The body breaks the resource's rules; `errors` lists every problem with its \
                  JSON pointer.",
    example: "`due_on` must be a date string written YYYY-MM-DD",
    response: Some("Invalid"),
};

/// An `Idempotency-Key` came back with another body.
pub const IDEMPOTENCY_KEY_REUSED: ProblemKind = ProblemKind {
    slug: "idempotency-key-reused",
    status: 422,
    title: "The Idempotency-Key was used for another request",
    description: "An `Idempotency-Key` comes back with a different request body.",
    example: "this Idempotency-Key was already used with a different request body",
    response: None,
};

/// The resource needs `If-Match`.
pub const PRECONDITION_REQUIRED: ProblemKind = ProblemKind {
    slug: "precondition-required",
    status: 428,
    title: "If-Match is required",
    description: "This resource takes changes only with If-Match naming the row's ETag (`*` \
                  names none).",
    example: "customers needs If-Match with the ETag of the row as last read",
    response: Some("PreconditionRequired"),
};

/// The caller's rate limit is spent.
pub const RATE_LIMITED: ProblemKind = ProblemKind {
    slug: "rate-limited",
    status: 429,
    title: "Too many requests",
    description: "The caller's rate limit is spent; see `Retry-After`.",
    example: "this caller's request rate is over its limit; retry after the given seconds",
    response: Some("RateLimited"),
};

/// A reloaded configuration has problems or changes a setting bound at start.
pub const CONFIGURATION_REFUSED: ProblemKind = ProblemKind {
    slug: "configuration-refused",
    status: 422,
    title: "The configuration was refused",
    description: "The configuration file has problems, or changes a setting that only a \
                  restart applies; `problems` lists every one with its location. The running \
                  configuration keeps serving.",
    example: "2 problems in the configuration file",
    response: Some("ConfigurationRefused"),
};

/// A fault of Portico itself.
pub const INTERNAL: ProblemKind = ProblemKind {
    slug: "internal",
    status: 500,
    title: "Internal error",
    description: "A fault of Portico itself (never a client mistake; logged).",
    example: "Portico failed; the log has the details",
    response: None,
};

/// The database refused the query.
pub const SOURCE_ERROR: ProblemKind = ProblemKind {
    slug: "source-error",
    status: 502,
    title: "The legacy database refused the query",
    description: "The legacy database refused the query: a configuration mistake (`portico \
                  check` says which).",
    example: "source `erp` refused the query; the operator should run `portico check`",
    response: Some("SourceError"),
};

/// The source's driver cannot do what the request needs, and nothing does it instead.
pub const UNSUPPORTED_BY_SOURCE: ProblemKind = ProblemKind {
    slug: "unsupported-by-source",
    status: 501,
    title: "The legacy database's driver cannot do this",
    description: "The request needs something the source's ODBC driver cannot do (its \
                  capability profile: ORDER BY, `?` parameters, IN lists, …), or a table too \
                  large to serve from memory; `detail` names the source, what is missing and \
                  the operator's fix. Other requests to the resource may work.",
    example: "source `access` cannot serve this: it needs `?` parameters \
              (capabilities.parameters = false, declared); serve its tables from memory with \
              [sources.access] snapshot = { max_rows = 50000, ttl = \"5m\" }",
    response: Some("UnsupportedBySource"),
};

/// The identity provider's keys have never been fetched.
pub const AUTH_UNAVAILABLE: ProblemKind = ProblemKind {
    slug: "auth-unavailable",
    status: 503,
    title: "Tokens cannot be verified right now",
    description: "The identity provider's keys have never been fetched; see `Retry-After`.",
    example: "the identity provider's keys cannot be fetched",
    response: None,
};

/// The source's concurrency limit is reached.
pub const SOURCE_BUSY: ProblemKind = ProblemKind {
    slug: "source-busy",
    status: 503,
    title: "The legacy database is at its concurrency limit",
    description: "The legacy database is busy, unreachable or slow; see `Retry-After`.",
    example: "source `erp` is serving as many queries as it is allowed to; retry shortly",
    response: Some("Unavailable"),
};

/// The database cannot be reached.
pub const SOURCE_UNAVAILABLE: ProblemKind = ProblemKind {
    slug: "source-unavailable",
    status: 503,
    title: "The legacy database cannot be reached",
    description: "The legacy database cannot be reached (Portico reconnects by itself); see \
                  `Retry-After`.",
    example: "source `erp` cannot be reached",
    response: None,
};

/// The query ran past its timeout.
pub const SOURCE_TIMEOUT: ProblemKind = ProblemKind {
    slug: "source-timeout",
    status: 503,
    title: "The legacy database did not answer in time",
    description: "The query ran past the source's `query_timeout`; see `Retry-After`.",
    example: "source `erp` did not answer within 30000 ms",
    response: None,
};

/// Every kind, by status.
pub const ALL: [&ProblemKind; 27] = [
    &BAD_PARAMETER,
    &INVALID_REQUEST,
    &MALFORMED_BODY,
    &UNAUTHORIZED,
    &INSUFFICIENT_SCOPE,
    &FORBIDDEN,
    &NOT_FOUND,
    &METHOD_NOT_ALLOWED,
    &NOT_ACCEPTABLE,
    &REQUEST_TIMEOUT,
    &CONFLICT,
    &PRECONDITION_FAILED,
    &CURSOR_EXPIRED,
    &PAYLOAD_TOO_LARGE,
    &UNSUPPORTED_MEDIA_TYPE,
    &VALIDATION,
    &IDEMPOTENCY_KEY_REUSED,
    &PRECONDITION_REQUIRED,
    &RATE_LIMITED,
    &INTERNAL,
    &CONFIGURATION_REFUSED,
    &UNSUPPORTED_BY_SOURCE,
    &SOURCE_ERROR,
    &AUTH_UNAVAILABLE,
    &SOURCE_BUSY,
    &SOURCE_UNAVAILABLE,
    &SOURCE_TIMEOUT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_response_names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.slug, b.slug);
                assert!(a.response.is_none() || a.response != b.response);
            }
        }
        assert_eq!(ProblemKind::documented().count(), 19);
        assert_eq!(
            ProblemKind::documented_by("Unavailable"),
            Some(&SOURCE_BUSY)
        );
        assert_eq!(ProblemKind::documented_by("Missing"), None);
    }

    #[test]
    fn statuses_are_client_or_server_errors() {
        for kind in ALL {
            assert!((400..600).contains(&kind.status), "{}", kind.slug);
        }
    }
}
