//! The admin API of SPEC §7: HTTP/1.1 with JSON bodies on `global.admin`.
//!
//! With `admin_token` set, every endpoint but `/healthz` wants
//! `Authorization: Bearer <token>` (compared in constant time); without it,
//! or with a wrong one, 401 with `WWW-Authenticate: Bearer`. Bodies are
//! read up to [`MAX_BODY`]; bad JSON or values get 400 naming the field.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::state::StateName;
use super::{ChangeError, Control, status};
use crate::config;

/// Admin request bodies are small JSON objects.
const MAX_BODY: usize = 64 * 1024;
/// An admin connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(30);

type Reply = Response<Full<Bytes>>;

/// Serves the admin API on `socket` until the process ends.
pub async fn serve(socket: TcpListener, control: Arc<Control>, token: Option<String>) {
    let token: Option<Arc<str>> = token.map(Into::into);
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let control = control.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let control = control.clone();
                let token = token.clone();
                async move { Ok::<_, Infallible>(handle(&control, token.as_deref(), peer, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(err) = tokio::time::timeout(Duration::from_secs(300), connection).await {
                tracing::debug!(error = %err, "admin connection ended");
            }
        });
    }
}

async fn handle(
    control: &Control,
    token: Option<&str>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == "/healthz" {
        return match method {
            Method::GET | Method::HEAD => healthz(control),
            _ => not_allowed("GET"),
        };
    }
    if let Some(token) = token {
        if !authorized(req.headers(), token) {
            let mut reply = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            reply.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return reply;
        }
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reply = match (segments.as_slice(), &method) {
        (["status"], &Method::GET) => json_reply(StatusCode::OK, &status::status(control)),
        (["status"], _) => not_allowed("GET"),
        (["metrics"], &Method::GET) => {
            // Prometheus asks for OpenMetrics; anything else gets the
            // classic text format.
            let openmetrics = req.headers().get_all(header::ACCEPT).iter().any(|v| {
                v.as_bytes()
                    .windows(23)
                    .any(|w| w == b"application/openmetrics")
            });
            let text = crate::metrics::render(status::scrape(control), openmetrics);
            let content_type = if openmetrics {
                crate::metrics::OPENMETRICS
            } else {
                crate::metrics::TEXT
            };
            let mut reply = Response::new(Full::new(Bytes::from(text)));
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            reply
        }
        (["metrics"], _) => not_allowed("GET"),
        (["reload"], &Method::POST) => match control.reload().await {
            Ok(summary) => json_reply(
                StatusCode::OK,
                &json!({"reloaded": true, "summary": summary}),
            ),
            Err(errors) => json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"reloaded": false, "errors": errors}),
            ),
        },
        (["reload"], _) => not_allowed("POST"),
        (["pools", pool, "servers"], &Method::POST) => {
            let pool = decode(pool);
            match read_object(req).await {
                Ok(body) => register(control, &pool, &body).await,
                Err(reply) => reply,
            }
        }
        (["pools", _, "servers"], _) => not_allowed("POST"),
        (["pools", pool, "servers", name], &Method::PUT) => {
            let (pool, name) = (decode(pool), decode(name));
            match read_object(req).await {
                Ok(body) => update(control, &pool, &name, &body).await,
                Err(reply) => reply,
            }
        }
        (["pools", pool, "servers", name], &Method::DELETE) => {
            let (pool, name) = (decode(pool), decode(name));
            match control.deregister(&pool, &name).await {
                Ok(()) => {
                    tracing::info!(pool, server = name, "server deregistered");
                    json_reply(StatusCode::OK, &json!({"deregistered": name, "pool": pool}))
                }
                Err(err) => change_error(&err),
            }
        }
        (["pools", _, "servers", _], _) => not_allowed("PUT, DELETE"),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    tracing::debug!(client.addr = %peer, %method, path, status = reply.status().as_u16(), "admin request");
    reply
}

fn healthz(control: &Control) -> Reply {
    let (status, text) = if control.shared.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    };
    let mut reply = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

/// `Authorization: Bearer <token>`, compared without an early exit.
fn authorized(headers: &http::HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let expected = token.as_bytes();
    let mut diff = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        diff |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// A path segment, percent-decoded (names are URL-safe, but a client may
/// still encode them).
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (byte, ..) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request body as a JSON object.
async fn read_object(req: Request<Incoming>) -> Result<Map<String, Value>, Reply> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes, or was cut"),
            ));
        }
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(err) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not valid JSON: {err}"),
        )),
    }
}

/// Checks an object's keys against `known`, and reads fields with the type
/// they must have; every error names its field.
struct Fields<'a> {
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(object: &'a Map<String, Value>, known: &[&str]) -> Result<Fields<'a>, Box<Reply>> {
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(field_error(
                unknown,
                &format!("unknown field (expected one of {})", known.join(", ")),
            ));
        }
        Ok(Fields { object })
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, Box<Reply>> {
        match self.object.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(field_error(name, "expected a string")),
        }
    }

    fn integer(&self, name: &str) -> Result<Option<i64>, Box<Reply>> {
        match self.object.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| field_error(name, "expected an integer")),
            Some(_) => Err(field_error(name, "expected an integer")),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, Box<Reply>> {
        match self.object.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(field_error(name, "expected true or false")),
        }
    }
}

async fn register(control: &Control, pool: &str, body: &Map<String, Value>) -> Reply {
    let server = (|| {
        let fields = Fields::new(body, &["name", "addr", "weight", "route", "backup"])?;
        let name = fields
            .string("name")?
            .ok_or_else(|| field_error("name", "required"))?;
        let addr = fields
            .string("addr")?
            .ok_or_else(|| field_error("addr", "required"))?;
        config::runtime_server(
            name,
            addr,
            fields.integer("weight")?,
            fields.string("route")?,
            fields.boolean("backup")?,
        )
        .map_err(|(field, message)| field_error(field, &message))
    })();
    let server = match server {
        Ok(server) => server,
        Err(reply) => return *reply,
    };
    let name = server.name.clone();
    match control.register(pool, server).await {
        Ok(()) => match server_json(control, pool, &name) {
            Some(json) => json_reply(StatusCode::CREATED, &json),
            None => json_reply(StatusCode::CREATED, &json!({"name": name})),
        },
        Err(err) => change_error(&err),
    }
}

async fn update(control: &Control, pool: &str, name: &str, body: &Map<String, Value>) -> Reply {
    let change = (|| {
        let fields = Fields::new(body, &["state", "weight"])?;
        let state = match fields.string("state")? {
            None => None,
            Some("ready") => Some(StateName::Ready),
            Some("drain") => Some(StateName::Drain),
            Some("maint") => Some(StateName::Maint),
            Some(other) => {
                return Err(field_error(
                    "state",
                    &format!("expected \"ready\", \"drain\" or \"maint\", got {other:?}"),
                ));
            }
        };
        let weight = match fields.integer("weight")? {
            None => None,
            Some(weight) => Some(
                u32::try_from(weight)
                    .ok()
                    .filter(|w| *w <= 1000)
                    .ok_or_else(|| {
                        field_error("weight", &format!("must be 0..=1000, got {weight}"))
                    })?,
            ),
        };
        if state.is_none() && weight.is_none() {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "nothing to change: give \"state\" and/or \"weight\"",
            )));
        }
        Ok((state, weight))
    })();
    let (state, weight) = match change {
        Ok(change) => change,
        Err(reply) => return *reply,
    };
    match control.update(pool, name, state, weight).await {
        Ok(()) => match server_json(control, pool, name) {
            Some(json) => json_reply(StatusCode::OK, &json),
            None => json_reply(StatusCode::OK, &json!({"name": name})),
        },
        Err(err) => change_error(&err),
    }
}

/// A server's entry as `/status` shows it.
fn server_json(control: &Control, pool: &str, name: &str) -> Option<Value> {
    let status = status::status(control);
    status["pools"][pool]["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

fn change_error(err: &ChangeError) -> Reply {
    let status = match err {
        ChangeError::NoPool(_) | ChangeError::NoServer { .. } => StatusCode::NOT_FOUND,
        ChangeError::Exists { .. } => StatusCode::CONFLICT,
        ChangeError::Invalid { field, message } => return bad_field(field, message),
        ChangeError::Save { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &err.to_string())
}

fn field_error(field: &str, message: &str) -> Box<Reply> {
    Box::new(bad_field(field, message))
}

fn bad_field(field: &str, message: &str) -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({"error": format!("{field}: {message}"), "field": field}),
    )
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({"error": message}))
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    reply
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    reply
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let headers = |value: &str| {
            let mut map = http::HeaderMap::new();
            map.insert(
                header::AUTHORIZATION,
                value.parse().unwrap_or_else(|_| unreachable!()),
            );
            map
        };
        assert!(authorized(&headers("Bearer s3cret"), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cret2"), "s3cret"));
        assert!(!authorized(&headers("Basic s3cret"), "s3cret"));
        assert!(!authorized(&http::HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode("app%2D01"), "app-01");
        assert_eq!(decode("a%zz"), "a%zz");
        assert_eq!(decode("%"), "%");
    }
}
