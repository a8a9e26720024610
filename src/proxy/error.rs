//! What can go wrong on the request path, and the response each gets.

use bytes::Bytes;
use http::StatusCode;

use crate::upstream::ConnectError;

/// One variant per way a request can fail; [`ProxyError::status`] maps each
/// to its status without a wildcard arm, so a new variant forces a choice.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("request head too large")]
    HeadTooLarge,
    #[error("request body larger than max_body_bytes")]
    BodyTooLarge,
    #[error("no route for this request")]
    NoRoute,
    #[error("no server available in pool {pool}")]
    NoServer { pool: String },
    #[error("could not connect to an app server")]
    UpstreamConnect(#[source] ConnectError),
    #[error("app server timed out")]
    UpstreamTimeout,
    #[error("app server failed")]
    UpstreamFailed(#[source] hyper::Error),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoServer { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamConnect(err) if err.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamConnect(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the client connection must be closed after the response
    /// (its framing can no longer be trusted).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_) | ProxyError::HeadTooLarge | ProxyError::BodyTooLarge
        )
    }
}

/// The short text body of a response berth makes itself.
pub fn body_for(status: StatusCode) -> Bytes {
    let text = match status.as_u16() {
        400 => "400 Bad Request: the request was malformed\n",
        404 => "404 Not Found: no route for this host and path\n",
        408 => "408 Request Timeout: the request head did not arrive in time\n",
        413 => "413 Content Too Large: the request body is too large\n",
        431 => "431 Request Header Fields Too Large\n",
        502 => "502 Bad Gateway: the app server failed\n",
        503 => "503 Service Unavailable: no app server is available\n",
        504 => "504 Gateway Timeout: the app server did not answer in time\n",
        _ => return Bytes::from(format!("{status}\n")),
    };
    Bytes::from_static(text.as_bytes())
}
