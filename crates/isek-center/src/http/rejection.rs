//! [`Rejection`]: a request refused with a status and an envelope message, and the one
//! place where the kinds of the layers below become HTTP statuses.
//!
//! `policy` refuses with a [`RefusalKind`], the writer fails with a [`WriteError`];
//! neither knows HTTP. [`status_of`] is the whole mapping, and every answer leaves
//! through [`json_response`] as a Flask-style envelope.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::policy::{Refusal, RefusalKind};
use crate::render::envelope_without_data;
use crate::writer::WriteError;

/// A request refused: status and envelope message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status (and envelope `code`).
    pub status: StatusCode,
    /// Envelope `message`.
    pub message: String,
}

impl Rejection {
    /// A 503 with `message`: the center cannot answer now; retrying may work.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// The status of a refusal of `kind`.
pub fn status_of(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::Forbidden => StatusCode::FORBIDDEN,
        RefusalKind::SignatureRequired => StatusCode::UNAUTHORIZED,
        RefusalKind::LookAlike => StatusCode::CONFLICT,
        RefusalKind::Full | RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<Refusal> for Rejection {
    fn from(r: Refusal) -> Self {
        Self {
            status: status_of(r.kind),
            message: r.message,
        }
    }
}

impl From<WriteError> for Rejection {
    fn from(error: WriteError) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: match error {
                WriteError::Unavailable(e) => format!("Storage unavailable: {e}"),
                WriteError::ShuttingDown => "The center is shutting down.".to_owned(),
                WriteError::Refused(refusal) => return refusal.into(),
            },
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        envelope(self.status, &self.message)
    }
}

/// A JSON body with the right content type.
pub fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An envelope with `data: null`.
pub fn envelope(status: StatusCode, message: &str) -> Response {
    json_response(status, envelope_without_data(status.as_u16(), message))
}
