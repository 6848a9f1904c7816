//! `/console`: the operator console, a static page embedded in the binary (no network needed,
//! nothing fetched from elsewhere). The page holds no data: it asks for an admin token, keeps
//! it in the tab's `sessionStorage`, and reads the admin API with it (`/admin/overview`, the
//! dead letters, resend).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::problem::ApiError;

/// The page and its assets: file name, content type, bytes.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

/// Only this origin's scripts, styles and API; no inline script, no framing, no forms
/// posted anywhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `GET /console`: the page.
pub async fn page() -> HttpResponse {
    let (_, content_type, body) = ASSETS[0];
    served(content_type, body)
}

/// `GET /console/{file}`: its script and style sheet.
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let file = req.match_info().get("file").unwrap_or_default();
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| served(content_type, body))
        .ok_or_else(|| super::request::not_served(&req))
}

fn served(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Revalidated each time: a new binary brings new assets under the same names.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_name_nothing_outside_this_origin() {
        for (name, _, body) in ASSETS {
            for scheme in ["http:", "https:", "//"] {
                let outside = body
                    .match_indices(scheme)
                    // `//` starts comments in the script; only a URL after a quote or `(`
                    // would load something.
                    .filter(|(at, _)| {
                        body[..*at]
                            .chars()
                            .last()
                            .is_some_and(|c| matches!(c, '"' | '\'' | '(' | '`'))
                    })
                    .count();
                assert_eq!(outside, 0, "{name} names a URL with `{scheme}`");
            }
        }
    }

    #[test]
    fn the_page_runs_no_inline_script_or_style() {
        let (_, _, page) = ASSETS[0];
        assert!(!page.contains("<script>"), "an inline script");
        assert!(!page.contains("style="), "an inline style");
        assert!(!page.contains("<style"), "an inline style sheet");
        let handler = page.match_indices(" on").any(|(at, _)| {
            let name: String = page[at + 3..]
                .chars()
                .take_while(char::is_ascii_lowercase)
                .collect();
            !name.is_empty() && page[at + 3 + name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler");
    }
}
