//! Response compression: `Accept-Encoding` negotiated once per request (q-values, `identity`,
//! `*`), bodies above `[server.compression] min_size` encoded chunk by chunk as they are sent.
//! A cached answer arrives here already encoded (its variant made once, kept in the cache
//! entry) and is left as it is; so is anything else that carries `Content-Encoding`.

use actix_http::encoding::Encoder;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ResponseHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, ContentEncoding, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};

use crate::cache::variant_tag;
use crate::config::{CompressionConfig, ContentCoding};

/// What this request's response may be compressed with, kept in the request's extensions for
/// handlers that encode their own bodies (the cache); absent when compression is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The coding to use; `None` for the body as it is.
    pub coding: Option<ContentCoding>,
    /// Smaller bodies are not compressed (nor marked `Vary: Accept-Encoding`).
    pub min_size: u64,
}

impl Negotiated {
    /// Whether a body of `len` bytes is compressed for some clients, so that its response
    /// varies by `Accept-Encoding`.
    pub fn compressible(&self, len: usize) -> bool {
        len as u64 >= self.min_size && len > 0
    }
}

/// What `req`'s response may be compressed with; `None` when compression is off.
pub fn negotiated(req: &HttpRequest) -> Option<Negotiated> {
    req.extensions().get::<Negotiated>().copied()
}

/// The preferred coding of `offered` (in the server's order of preference) that the
/// `Accept-Encoding` values accept, or `None` for the body as it is: no header, nothing
/// offered accepted, or `identity` weighed above it. Ties go to compression, in `offered`'s order.
pub fn negotiate<'a>(
    accept_encoding: impl IntoIterator<Item = &'a str>,
    offered: &[ContentCoding],
) -> Option<ContentCoding> {
    let mut any_header = false;
    // Weights in thousandths: exact, as RFC 9110 limits q to three decimals.
    let (mut star, mut identity) = (None, None);
    let mut explicit: Vec<(ContentCoding, u16)> = Vec::new();
    for value in accept_encoding {
        any_header = true;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let mut weight = Some(1000);
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        weight = qvalue(value.trim());
                    }
                }
            }
            // A weight that does not parse drops the item, not the header.
            let Some(weight) = weight else { continue };
            match coding.as_str() {
                "*" => star = Some(weight),
                "identity" => identity = Some(weight),
                "br" => explicit.push((ContentCoding::Br, weight)),
                "gzip" | "x-gzip" => explicit.push((ContentCoding::Gzip, weight)),
                _ => {}
            }
        }
    }
    if !any_header {
        return None;
    }
    let weight_of = |coding: ContentCoding| {
        explicit
            .iter()
            .find(|(c, _)| *c == coding)
            .map(|&(_, w)| w)
            .or(star)
            .unwrap_or(0)
    };
    let best = offered
        .iter()
        .map(|&c| (c, weight_of(c)))
        .filter(|&(_, w)| w > 0)
        // `max_by_key` keeps the last of equals: reversed, the first offered wins a tie.
        .rev()
        .max_by_key(|&(_, w)| w)?;
    // `identity` competes only when the client weighs it: left unnamed, any coding the
    // client accepts is preferred to sending the body as it is.
    (best.1 >= identity.unwrap_or(0)).then_some(best.0)
}

/// A `qvalue` (RFC 9110 §12.4.2) in thousandths.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(fraction),
        "1" if fraction == 0 => Some(1000),
        _ => None,
    }
}

/// Whether a body of this media type gains from compression: text, the metrics, and the JSON,
/// YAML and XML families. Never `text/event-stream` (each event must reach the client when written), nor
/// media that is compressed already (images, archives).
fn compressible_type(head: &ResponseHead) -> bool {
    let Some(value) = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/x-ndjson"
                | "application/openmetrics-text"
                | "application/yaml"
                | "application/javascript"
                | "application/xml"
        )
}

/// Merges every `Vary` value of `head` (and `also`) into one header, each name once: the
/// CORS layer rewrites only the first `Vary` header, and would lose the others.
pub fn merge_vary(headers: &mut actix_web::http::header::HeaderMap, also: Option<&str>) {
    let mut names: Vec<String> = Vec::new();
    let present = headers
        .get_all(header::VARY)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .chain(also);
    for name in present.map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_string());
        }
    }
    if names.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        headers.insert(header::VARY, value);
    }
}

/// The header value of `coding`.
pub fn content_encoding(coding: ContentCoding) -> ContentEncoding {
    match coding {
        ContentCoding::Br => ContentEncoding::Brotli,
        ContentCoding::Gzip => ContentEncoding::Gzip,
    }
}

/// Negotiates the coding of each request's response (kept in its extensions for the cache)
/// and compresses the response body when its type gains from it, it is not encoded already,
/// and it is at least `min_size` (a streamed body, of unknown size, always is). A compressed
/// response carries its own entity tag (`variant_tag`) and every compressible one
/// `Vary: Accept-Encoding`.
pub async fn compress(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let settings = req
        .app_data::<web::Data<CompressionConfig>>()
        .filter(|s| s.enabled)
        .map(|s| (s.min_size, s.encodings.clone()));
    let negotiated = settings.map(|(min_size, offered)| {
        let accepted = req
            .headers()
            .get_all(header::ACCEPT_ENCODING)
            .filter_map(|v| v.to_str().ok());
        Negotiated {
            coding: negotiate(accepted, &offered),
            min_size,
        }
    });
    if let Some(negotiated) = negotiated {
        req.extensions_mut().insert(negotiated);
    }
    let response = next.call(req).await?;
    Ok(response.map_body(move |head, body| {
        let Some(negotiated) = negotiated else {
            return Encoder::response(ContentEncoding::Identity, head, body);
        };
        let large_enough = match body.size() {
            BodySize::None => false,
            BodySize::Sized(len) => len > 0 && len >= negotiated.min_size,
            BodySize::Stream => true,
        };
        let applies = large_enough
            && !head.headers.contains_key(header::CONTENT_ENCODING)
            && !matches!(
                head.status,
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
            )
            && compressible_type(head);
        if !applies {
            return Encoder::response(ContentEncoding::Identity, head, body);
        }
        let coding = match negotiated.coding {
            Some(coding) => {
                // Other bytes, another tag; a weak tag already allows for it.
                let strong = head
                    .headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .filter(|tag| !tag.starts_with("W/"))
                    .map(|tag| variant_tag(tag, coding));
                if let Some(tag) = strong.and_then(|t| HeaderValue::from_str(&t).ok()) {
                    head.headers.insert(header::ETAG, tag);
                }
                content_encoding(coding)
            }
            None => ContentEncoding::Identity,
        };
        let encoded = Encoder::response(coding, head, body);
        merge_vary(&mut head.headers, Some("Accept-Encoding"));
        encoded
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [ContentCoding; 2] = [ContentCoding::Br, ContentCoding::Gzip];

    fn pick(header: Option<&str>) -> Option<ContentCoding> {
        negotiate(header, &BOTH)
    }

    #[test]
    fn accept_encoding_is_negotiated_with_q_values() {
        use ContentCoding::{Br, Gzip};
        assert_eq!(pick(None), None);
        assert_eq!(pick(Some("")), None);
        assert_eq!(pick(Some("gzip")), Some(Gzip));
        assert_eq!(pick(Some("gzip, deflate, br")), Some(Br), "ties go to br");
        assert_eq!(pick(Some("br;q=0.5, gzip")), Some(Gzip));
        assert_eq!(pick(Some("gzip;q=0, br;q=0")), None);
        assert_eq!(pick(Some("gzip;q=0")), None);
        assert_eq!(pick(Some("identity")), None);
        assert_eq!(pick(Some("deflate")), None);
        assert_eq!(pick(Some("*")), Some(Br));
        assert_eq!(pick(Some("*;q=0.1, br;q=0")), Some(Gzip));
        assert_eq!(pick(Some("GZIP;Q=1.0")), Some(Gzip));
        assert_eq!(pick(Some("x-gzip")), Some(Gzip));
        // identity preferred over what is offered.
        assert_eq!(pick(Some("gzip;q=0.5, identity;q=1")), None);
        assert_eq!(pick(Some("gzip;q=0.5, identity;q=0")), Some(Gzip));
        assert_eq!(
            pick(Some("gzip;q=0.5")),
            Some(Gzip),
            "unnamed, identity does not compete"
        );
        assert_eq!(pick(Some("gzip;q=0.5, *;q=0")), Some(Gzip));
        // A malformed weight drops its item only.
        assert_eq!(pick(Some("br;q=2, gzip")), Some(Gzip));
        assert_eq!(pick(Some("br;q=0.1234, gzip;q=0.9")), Some(Gzip));
        // Several header lines count together.
        assert_eq!(negotiate(["br;q=0", "gzip"], &BOTH), Some(Gzip));
        // Only what is offered.
        assert_eq!(negotiate(Some("br"), &[ContentCoding::Gzip]), None);
        assert_eq!(
            negotiate(Some("br, gzip"), &[ContentCoding::Gzip]),
            Some(Gzip)
        );
    }

    #[test]
    fn q_values_parse_to_thousandths() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue("0.1234"), None);
        assert_eq!(qvalue("x"), None);
    }

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use actix_web::body::MessageBody;
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::web::Bytes;
    use actix_web::{middleware, App, HttpResponse};

    type Chunks = tokio::sync::mpsc::UnboundedReceiver<Bytes>;

    /// Routes behind the compression layer with its default settings: `/json` (2 KiB, with an
    /// ETag), `/gzipped` (already gzip), `/events` (an event stream) and `/stream` (the
    /// chunks sent on the channel, as they come).
    async fn app(
        chunks: Chunks,
    ) -> impl actix_web::dev::Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    > {
        let chunks = Arc::new(Mutex::new(Some(chunks)));
        let json = format!("{{\"data\":\"{}\"}}", "x".repeat(2048));
        let gzipped = crate::cache::encode(ContentCoding::Gzip, json.as_bytes());
        let (json, gzipped) = (json.clone(), gzipped.clone());
        init_service(
            App::new()
                .app_data(web::Data::new(CompressionConfig::default()))
                .wrap(middleware::from_fn(compress))
                .route(
                    "/json",
                    web::get().to(move || {
                        let json = json.clone();
                        async move {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .insert_header((header::ETAG, "\"v1\""))
                                .body(json)
                        }
                    }),
                )
                .route(
                    "/gzipped",
                    web::get().to(move || {
                        let gzipped = gzipped.clone();
                        async move {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .insert_header((header::CONTENT_ENCODING, "gzip"))
                                .body(gzipped)
                        }
                    }),
                )
                .route(
                    "/events",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("text/event-stream")
                            .streaming(futures_util::stream::iter([Ok::<_, actix_web::Error>(
                                Bytes::from("data: x\n\n".repeat(300)),
                            )]))
                    }),
                )
                .route(
                    "/stream",
                    web::get().to(move || {
                        let taken = chunks.lock().unwrap().take();
                        async move {
                            let stream = futures_util::stream::unfold(taken, |rx| async move {
                                let mut rx = rx?;
                                let chunk = rx.recv().await?;
                                Some((Ok::<_, actix_web::Error>(chunk), Some(rx)))
                            });
                            HttpResponse::Ok()
                                .content_type("application/x-ndjson")
                                .streaming(stream)
                        }
                    }),
                ),
        )
        .await
    }

    fn get(path: &str, accept: &str) -> actix_http::Request {
        TestRequest::get()
            .uri(path)
            .insert_header((header::ACCEPT_ENCODING, accept))
            .to_request()
    }

    fn header_of(response: &ServiceResponse<impl MessageBody>, name: header::HeaderName) -> String {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    #[actix_web::test]
    async fn bodies_are_compressed_with_their_own_tag_unless_already_encoded() {
        let (_send, chunks) = tokio::sync::mpsc::unbounded_channel();
        let app = app(chunks).await;
        let answer = call_service(&app, get("/json", "br")).await;
        assert_eq!(header_of(&answer, header::CONTENT_ENCODING), "br");
        assert_eq!(header_of(&answer, header::ETAG), "\"v1-br\"");
        assert_eq!(header_of(&answer, header::VARY), "accept-encoding");
        let answer = call_service(&app, get("/json", "identity")).await;
        assert_eq!(header_of(&answer, header::CONTENT_ENCODING), "");
        assert_eq!(header_of(&answer, header::ETAG), "\"v1\"");
        assert_eq!(header_of(&answer, header::VARY), "Accept-Encoding");

        // Already gzip: the same bytes, whatever the client prefers, and no Vary added.
        let answer = call_service(&app, get("/gzipped", "br")).await;
        assert_eq!(header_of(&answer, header::CONTENT_ENCODING), "gzip");
        assert_eq!(header_of(&answer, header::VARY), "");
        let body = read_body(answer).await;
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        decoder.write_all(&body).unwrap();
        let json = decoder.finish().unwrap();
        assert!(json.starts_with(b"{\"data\":\"xxx"), "one layer of gzip");

        // An event stream is never compressed.
        let answer = call_service(&app, get("/events", "gzip")).await;
        assert_eq!(header_of(&answer, header::CONTENT_ENCODING), "");
    }

    #[actix_web::test]
    async fn a_streamed_body_is_compressed_chunk_by_chunk() {
        let (send, chunks) = tokio::sync::mpsc::unbounded_channel();
        let app = app(chunks).await;
        let answer = call_service(&app, get("/stream", "gzip")).await;
        assert_eq!(header_of(&answer, header::CONTENT_ENCODING), "gzip");
        let mut body = std::pin::pin!(answer.into_body());
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        let first = "{\"row\":1}\n".repeat(50);
        send.send(Bytes::from(first.clone())).unwrap();
        // The first chunk reaches the client, decodable, while the stream has not ended: the
        // layer flushes when the producer pauses instead of buffering the whole body.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while decoder.get_ref().len() < first.len() {
            let next = tokio::time::timeout_at(
                deadline,
                futures_util::future::poll_fn(|cx| body.as_mut().poll_next(cx)),
            )
            .await
            .expect("the first chunk arrives before the stream ends")
            .expect("the body goes on")
            .ok()
            .expect("a chunk, not an error");
            decoder.write_all(&next).unwrap();
            decoder.flush().unwrap();
        }
        assert_eq!(decoder.get_ref()[..], *first.as_bytes());
        let second = "{\"row\":2}\n".repeat(50);
        send.send(Bytes::from(second.clone())).unwrap();
        drop(send);
        while let Some(next) = futures_util::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await
        {
            decoder
                .write_all(&next.ok().expect("a chunk, not an error"))
                .unwrap();
        }
        assert_eq!(decoder.finish().unwrap(), (first + &second).into_bytes());
    }

    #[test]
    fn vary_values_merge_into_one_header() {
        let mut headers = actix_web::http::header::HeaderMap::new();
        headers.append(header::VARY, HeaderValue::from_static("Authorization"));
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        merge_vary(&mut headers, Some("Accept-Encoding"));
        let all: Vec<_> = headers.get_all(header::VARY).collect();
        assert_eq!(all, ["Authorization, accept-encoding"]);
    }
}
