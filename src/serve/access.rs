//! Who may call the API and with what: an optional API key (OpenAI's `Authorization: Bearer KEY`, checked
//! on every API route; the page, the logo and `/health` stay open), the CORS policy, and the refusal of a
//! body whose declared Content-Length is over the limit before any of it is read.
//!
//! Defaults follow the reference server: no key, CORS open to any origin. With a key, CORS is limited to
//! the page's own origin (no cross-origin headers) unless `--cors-origin` names origins.
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;

/// The key API requests must carry, when one is set.
#[derive(Clone, Debug)]
pub struct ApiKey(pub String);

/// 401 unless the request carries `Authorization: Bearer <key>`.
pub async fn require_key(State(key): State<ApiKey>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if same_secret(given.as_bytes(), key.0.as_bytes()) => next.run(request).await,
        _ => {
            let message = match given {
                None => "this server needs an API key: send `Authorization: Bearer <key>`",
                Some(_) => "the API key is not valid for this server",
            };
            let mut e = ApiError::invalid(message, None);
            e.status = StatusCode::UNAUTHORIZED;
            e.code = Some("invalid_api_key");
            let mut response = e.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Equality that takes the same time wherever the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CORS layer: the origins given; else any origin without a key (as the reference), none with one.
pub fn cors(origins: &[String], key_set: bool) -> Result<CorsLayer, super::ServeError> {
    if origins.iter().any(|o| o == "*") || (origins.is_empty() && !key_set) {
        return Ok(CorsLayer::permissive());
    }
    let values = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| super::ServeError::CorsOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new().allow_origin(AllowOrigin::list(values)).allow_methods(tower_http::cors::Any).allow_headers([
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::ACCEPT,
    ]))
}

/// 413 at once when the declared body is over `limit` (the body is never read).
pub async fn refuse_oversized(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut response = ApiError::too_large(limit).into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"sk-abc", b"sk-abc"));
        assert!(!same_secret(b"sk-abd", b"sk-abc"));
        assert!(!same_secret(b"sk-ab", b"sk-abc"));
        assert!(!same_secret(b"", b"sk-abc"));
    }

    #[test]
    fn bad_origins_are_named() {
        assert!(cors(&[], false).is_ok());
        assert!(cors(&["https://chat.example.org".into()], true).is_ok());
        let err = cors(&["bad\norigin".into()], true).unwrap_err().to_string();
        assert!(err.contains("--cors-origin"), "{err}");
    }
}
