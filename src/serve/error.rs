//! Error responses: one JSON shape for every endpoint, OpenAI's `{"error": {message, type, param,
//! code}}` with FastAPI's `detail` beside it (the reference server's clients read that).
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error type: invalid_request_error, server_error, ...
    pub kind: &'static str,
    /// The request field at fault, e.g. `messages[0].content`.
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, sent as Retry-After (503 when every worker is busy).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400, naming the field.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            param: param.map(str::to_string),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// The same error for a field inside `object`.
    pub fn in_object(mut self, object: &str) -> Self {
        self.param = self.param.map(|p| format!("{object}.{p}"));
        self.message = format!("{object}.{}", self.message);
        self
    }

    pub fn too_large(limit: usize) -> Self {
        let e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than {limit} bytes"),
        );
        ApiError { code: Some("request_too_large"), ..e }
    }

    pub fn busy(retry_after: u64, message: impl Into<String>) -> Self {
        let e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        ApiError { code: Some("server_busy"), retry_after: Some(retry_after), ..e }
    }

    pub fn not_found(message: impl Into<String>, param: Option<&str>, code: &'static str) -> Self {
        let e = Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message);
        ApiError { param: param.map(str::to_string), code: Some(code), ..e }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError { code: Some("timeout"), ..Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request_error", message) }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "detail": self.message,
            "error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code},
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
