//! OAuth errors on the wire: JSON bodies with the RFC status, and the extractor errors that
//! would otherwise leave actix's plain-text 400s.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::oauth::{ErrorCode, OAuthError};

/// An OAuth error answered as JSON (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 7662, RFC 7009).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub OAuthError);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interaction_uri: Option<&'a str>,
}

/// The status table. 401 only for failed client authentication; 503 only when the failure
/// is transient; every other client mistake is 400.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::AccessDenied | ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidGrant
        | ErrorCode::UnauthorizedClient
        | ErrorCode::UnsupportedGrantType
        | ErrorCode::UnsupportedResponseType
        | ErrorCode::UnsupportedTokenType
        | ErrorCode::InvalidScope
        | ErrorCode::InvalidTarget
        | ErrorCode::InteractionRequired
        | ErrorCode::InvalidRedirectUri
        | ErrorCode::InvalidClientMetadata => StatusCode::BAD_REQUEST,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.code)
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), &self.0)
    }
}

/// Builds the JSON error response for `error` with `status`.
pub fn json_error(status: StatusCode, error: &OAuthError) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    no_store(&mut response);
    match error.code {
        // RFC 6749 §5.2: a 401 for a client that used (or should use) HTTP authentication.
        ErrorCode::InvalidClient => {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tether\"")));
        }
        // RFC 6750 §3: a bearer-protected resource answers with a Bearer challenge.
        ErrorCode::InvalidToken => {
            response
                .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\"")));
        }
        ErrorCode::TemporarilyUnavailable | ErrorCode::RateLimited => {
            response.insert_header((header::RETRY_AFTER, error.retry_after.unwrap_or(1)));
        }
        _ => {}
    }
    response.json(ErrorBody {
        error: error.code.as_str(),
        error_description: &error.description,
        interaction_uri: error.interaction_uri.as_deref(),
    })
}

/// RFC 6749 §5.1: responses with tokens or credentials are not cached.
pub fn no_store(response: &mut actix_web::HttpResponseBuilder) {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
}

/// Form bodies that fail to parse (wrong content type, bad encoding, too large, repeated
/// parameters) are `invalid_request`, in JSON.
pub fn form_error(err: actix_web::error::UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::UrlencodedError as E;
    let (status, description) = match &err {
        E::Overflow { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request body is too large".to_owned()),
        E::ContentType => (StatusCode::BAD_REQUEST, "expected an application/x-www-form-urlencoded body".to_owned()),
        other => (StatusCode::BAD_REQUEST, format!("malformed form body: {other}")),
    };
    let response = json_error(status, &OAuthError::invalid_request(description));
    actix_web::error::InternalError::from_response(err, response).into()
}

/// Registration bodies that are not the JSON object RFC 7591 describes.
pub fn json_error_handler(err: actix_web::error::JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let (status, error) = match &err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, OAuthError::invalid_request("request body is too large"))
        }
        E::ContentType => (StatusCode::BAD_REQUEST, OAuthError::invalid_request("expected an application/json body")),
        // RFC 7591 §3.2.2 names registration's own error; elsewhere it is a bad request.
        E::Deserialize(e) if req.path().starts_with("/register") => (
            StatusCode::BAD_REQUEST,
            OAuthError::new(ErrorCode::InvalidClientMetadata, format!("malformed client metadata: {e}")),
        ),
        E::Deserialize(e) => {
            (StatusCode::BAD_REQUEST, OAuthError::invalid_request(format!("malformed JSON body: {e}")))
        }
        other => (StatusCode::BAD_REQUEST, OAuthError::invalid_request(format!("malformed body: {other}"))),
    };
    let response = json_error(status, &error);
    actix_web::error::InternalError::from_response(err, response).into()
}

/// Unknown paths: 404 in JSON (never an HTML fallback: clients probing metadata URLs parse it).
pub async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, &OAuthError::invalid_request("no such endpoint"))
}

pub async fn method_not_allowed() -> HttpResponse {
    json_error(StatusCode::METHOD_NOT_ALLOWED, &OAuthError::invalid_request("method not allowed on this endpoint"))
}
