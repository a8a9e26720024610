//! The request path.
//!
//! ```text
//! handle()                      access log line, error → response
//!  └─ forward()                 one straight line of steps:
//!      1. check the request     smuggling shapes, head size → 400 / 431
//!      2. berth's own answers   health_path, redirect_https
//!      3. route                 host + path prefix → pool        → 404
//!      4. affinity              the request's tie, if it holds (affinity::decide)
//!      5. limit the body        declared size over max_body_bytes → 413
//!      6. rewrite the head      hop-by-hop out, X-Forwarded-* in, prefix strip,
//!                               berth's cookie out
//!      7. pick a server         the tied one, else balance; connect, retry
//!                               elsewhere (→ 502/503/504); record the tie
//!      8. send, wait            response_timeout                 → 504
//!      9. stream the response   headers cleaned, Set-Cookie for a new tie,
//!                               body counted, connection back to the pool
//! ```

pub mod body;
mod error;
pub mod headers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::accesslog::{AccessLog, Entry};
use crate::affinity::ServerId;
use crate::config;
use crate::route;
use crate::runtime::{Pool, Server, Snapshot};
use crate::upstream::{Conn, Sender};
use body::{BodyFaults, InFlight, PendingLog, RequestBody, ResponseBody};
pub use error::{ProxyError, body_for as error_body};

/// What every request on one listener shares.
pub struct ListenerInfo {
    pub config: config::Listener,
    /// The port clients connected to (`%p`, `X-Forwarded-Port`).
    pub port: u16,
    pub hsts: Option<HeaderValue>,
}

/// What every request on one client connection shares.
pub struct ConnInfo {
    /// The real client: the PROXY header's source when there is one.
    pub client: SocketAddr,
    /// The port the client connected to: the PROXY header's destination
    /// port when it carries addresses, else the listener's.
    pub forwarded_port: u16,
    /// The AWS VPC endpoint id from the PROXY header, if any.
    pub vpce_id: Option<HeaderValue>,
    /// The verified client certificate's subject (`client_ca` listeners).
    pub client_cert_subject: Option<HeaderValue>,
    pub listener: Arc<ListenerInfo>,
    /// The connection's watched activity (idle and head timeouts).
    pub activity: Arc<crate::watch::Activity>,
}

/// State the request path reads: the current snapshot, the log, and whether
/// shutdown has begun.
pub struct Shared {
    pub snapshot: arc_swap::ArcSwap<Snapshot>,
    pub log: AccessLog,
    pub draining: AtomicBool,
    pub counters: Arc<crate::metrics::Counters>,
}

/// Serves one request: forwards it, or answers it with an error, and makes
/// sure one access log line is written once its response is done.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let guard = ConnRequest::new(conn.activity.in_flight.clone());
    let raw = conn.activity.head_complete();
    let mut pending = Unanswered {
        shared: &shared,
        entry: log_entry(&req, &conn, raw.request_line),
        started,
        answered: false,
    };
    let snapshot = shared.snapshot.load_full();
    let mut served = None;
    let forwarded = match headers::check_framing(raw.framing) {
        Ok(()) => {
            forward(
                &shared,
                &snapshot,
                &conn,
                req,
                &mut pending.entry,
                &mut served,
            )
            .await
        }
        Err(err) => Err(err),
    };
    pending.answered = true;
    let mut entry = std::mem::replace(&mut pending.entry, Entry::blank());
    drop(pending);
    let mut response = match forwarded {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(client.addr = %conn.client, error = %err, "request failed");
            error_response(&err)
        }
    };
    entry.status = response.status().as_u16();
    match served {
        Some(server) => server.codes.count(entry.status),
        None => shared
            .counters
            .unserved(entry.pool.as_deref(), entry.status),
    }
    if shared.draining.load(Ordering::Relaxed) && conn.activity.watches_heads() {
        // Shutting down: HTTP/1.1 clients go elsewhere for their next request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let body = response.body_mut();
    body.set_log(PendingLog {
        log: shared.log.clone(),
        counters: shared.counters.clone(),
        entry,
        started,
    });
    body.set_guard(Box::new(guard));
    Ok(response)
}

/// A request whose handling may be dropped before it has a response: its
/// client went away while berth waited for the app server, or the drain
/// cut its connection. It still gets its access log line, with nginx's 499
/// ("client closed request") or, when the drain cut it, 503.
struct Unanswered<'a> {
    shared: &'a Arc<Shared>,
    entry: Entry,
    started: Instant,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut entry = std::mem::replace(&mut self.entry, Entry::blank());
        entry.status = if self.shared.draining.load(Ordering::Relaxed) {
            503
        } else {
            499
        };
        entry.duration = self.started.elapsed();
        self.shared.log.log(entry);
    }
}

/// The steps of the request path, in order (see the module docs).
async fn forward(
    shared: &Shared,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    entry: &mut Entry,
    served: &mut Option<Arc<Server>>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let config = &snapshot.config;
    let listener = &conn.listener;
    let limits = &config.global.limits;

    // 1. Refuse smuggling shapes and oversize heads.
    headers::check_request(req.version(), req.headers(), limits.max_header_bytes)?;
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .ok_or(ProxyError::BadRequest("request target is not a path"))?
        .to_owned();
    // An absolute-form target (or HTTP/2 :scheme) names http or https, or
    // nothing: berth is not a forward proxy for other schemes.
    if let Some(scheme) = req.uri().scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(ProxyError::BadRequest(
                "request target scheme is not http(s)",
            ));
        }
    }
    // HTTP/2's :authority, or an HTTP/1.1 absolute-form target, overrides Host.
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let host = authority
        .clone()
        .or_else(|| header_str(req.headers(), header::HOST).map(str::to_owned));
    let path = target.split('?').next().unwrap_or("/");

    // 2. What berth answers itself.
    if listener.config.health_path.as_deref() == Some(path) {
        return Ok(health_response(shared.draining.load(Ordering::Relaxed)));
    }
    if listener.config.redirect_https {
        let host = host
            .as_deref()
            .map(route::host_without_port)
            .unwrap_or_default();
        return redirect_https(host, &target);
    }

    // 3. Route.
    let route_index =
        route::resolve(&config.routes, host.as_deref(), path).ok_or(ProxyError::NoRoute)?;
    let (route, pool) = config
        .routes
        .get(route_index)
        .zip(snapshot.route_pool(route_index))
        .ok_or(ProxyError::NoRoute)?;
    entry.pool = Some(pool.name.clone());

    // 4. Affinity: the request's tie, if it carries one that holds.
    let now = Instant::now();
    let mut decision = {
        let claim = pool
            .affinity
            .claim(req.headers(), &target, conn.client.ip());
        pool.affinity.decide(&claim, pool.as_ref(), now)
    };

    // 5. A declared body over the limit is refused before anything is sent.
    let declared =
        header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(declared)) = (limits.max_body_bytes, declared) {
        if declared > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }

    // 6. Rewrite the head for the app server.
    let upgrading = headers::wants_upgrade(req.method(), req.version(), req.headers());
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let upstream_target = route::upstream_path(route, &target);
    parts.uri = Uri::try_from(upstream_target.as_ref())
        .map_err(|_| ProxyError::BadRequest("request target is not a valid URI"))?;
    parts.version = Version::HTTP_11;
    let forwarded = headers::Forwarded {
        client_ip: conn.client.ip(),
        tls: listener.config.tls,
        port: conn.forwarded_port,
        authority: authority.as_deref(),
        vpce_id: conn.vpce_id.as_ref(),
        client_cert_subject: conn.client_cert_subject.as_ref(),
    };
    headers::upstream_request(&mut parts.headers, upgrading, &forwarded);
    pool.affinity.strip_request(&mut parts.headers);
    let faults = Arc::new(BodyFaults::default());
    let body = if http_body::Body::is_end_stream(&incoming) {
        RequestBody::empty()
    } else {
        RequestBody::new(incoming, limits.max_body_bytes, faults.clone())
    };
    let request = Request::from_parts(parts, body);

    // 7. The tied server, else a balanced one; record the tie.
    let (server, upstream) = connect(pool, decision.tied()).await?;
    entry.server = Some(server.name.clone());
    *served = Some(server.clone());
    let set_cookie = pool.affinity.record(
        &mut decision,
        server.affinity_id,
        &server.route,
        listener.config.tls,
        now,
    );
    entry.outcome = decision.outcome();
    let in_flight = InFlight::new(server.clone());
    server.requests.fetch_add(1, Ordering::Relaxed);

    // 8. Send, and wait for the response head.
    let sent = tokio::time::timeout(
        pool.response_timeout,
        send(pool, &server, upstream, request),
    )
    .await;
    let (mut response, sender) = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(_)) if faults.too_large.load(Ordering::Relaxed) => {
            return Err(ProxyError::BodyTooLarge);
        }
        Ok(Err(_)) if faults.broken.load(Ordering::Relaxed) => {
            return Err(ProxyError::BadRequest(
                "the request body broke off or was malformed",
            ));
        }
        Ok(Err(err)) => return Err(err),
        Err(_) => return Err(ProxyError::UpstreamTimeout),
    };

    // 9. Stream the response back, with the tie's cookie if it changed.
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
        tunnel(client_upgrade, hyper::upgrade::on(&mut response));
    }
    let (mut parts, incoming) = response.into_parts();
    headers::downstream_response(&mut parts.headers, switching, listener.hsts.as_ref());
    pool.affinity.learn(
        &decision,
        &parts.headers,
        server.affinity_id,
        now,
        SystemTime::now(),
    );
    if let Some(cookie) = set_cookie {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    let reusable = (!switching).then_some(sender);
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(incoming, reusable, in_flight),
    ))
}

/// Connects to the `tied` server if there is one, else to one the pool
/// balances to; a connect failure is retried on another (balanced) server
/// up to `retries` times.
async fn connect(pool: &Pool, tied: Option<ServerId>) -> Result<(Arc<Server>, Conn), ProxyError> {
    let mut tried = Vec::new();
    let mut last_error = None;
    let mut next = tied.and_then(|id| pool.server_index(id));
    for _ in 0..=pool.retries {
        let Some(index) = next.take().or_else(|| pool.pick(&tried)) else {
            break;
        };
        tried.push(index);
        let Some(server) = pool.servers.get(index) else {
            break;
        };
        if let Some(mut conn) = server.conns.checkout() {
            // A kept-alive connection the server closed meanwhile is
            // replaced by a new one below.
            if conn.sender.ready().await.is_ok() {
                return Ok((server.clone(), conn));
            }
        }
        match server.connect(pool.connect_timeout).await {
            Ok(conn) => {
                server.connect_succeeded(&pool.name);
                return Ok((server.clone(), conn));
            }
            Err(err) => {
                tracing::warn!(pool = %pool.name, server = %server.name, error = %err, "connect failed");
                server.connect_failed(&pool.name);
                last_error = Some(err);
            }
        }
    }
    Err(match last_error {
        Some(err) => ProxyError::UpstreamConnect(err),
        None => ProxyError::NoServer {
            pool: pool.name.to_string(),
        },
    })
}

/// Sends the request. A pooled connection the server closed while it was
/// idle is replaced by a new one, once: always when the request never left
/// berth, and when it may have, only for an idempotent request without a
/// body (sending it again is harmless by definition; anything else that
/// reached an app server is never resent).
async fn send(
    pool: &Pool,
    server: &Server,
    mut conn: Conn,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Sender), ProxyError> {
    let resend = (conn.reused
        && request.method().is_idempotent()
        && http_body::Body::is_end_stream(request.body()))
    .then(|| head_of(&request));
    let mut err = match conn.sender.ready().await {
        Ok(()) => match conn.sender.try_send_request(request).await {
            Ok(response) => return Ok((response, conn.sender)),
            Err(err) => err,
        },
        Err(_) if conn.reused => {
            return send_fresh(pool, server, request).await;
        }
        Err(err) => return Err(ProxyError::UpstreamFailed(err)),
    };
    let request = match (err.take_message(), resend) {
        (Some(request), _) if conn.reused => request,
        (None, Some(head)) => head.map(|()| RequestBody::empty()),
        _ => return Err(ProxyError::UpstreamFailed(err.into_error())),
    };
    send_fresh(pool, server, request).await
}

async fn send_fresh(
    pool: &Pool,
    server: &Server,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Sender), ProxyError> {
    let mut conn = server
        .connect(pool.connect_timeout)
        .await
        .map_err(ProxyError::UpstreamConnect)?;
    let response = conn
        .sender
        .send_request(request)
        .await
        .map_err(ProxyError::UpstreamFailed)?;
    Ok((response, conn.sender))
}

fn head_of<B>(request: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}

/// Copies bytes both ways once client and app server have both switched
/// protocols (WebSocket).
fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(error = %err, "upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %err, "tunnel ended");
        }
    });
}

/// A response berth makes itself, with a short text body.
pub fn text_response(status: StatusCode, text: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error_response(err: &ProxyError) -> Response<ResponseBody> {
    let status = err.status();
    let mut response = text_response(status, error::body_for(status));
    if err.closes_connection() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn health_response(draining: bool) -> Response<ResponseBody> {
    if draining {
        text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"draining\n"),
        )
    } else {
        text_response(StatusCode::OK, Bytes::from_static(b"ok\n"))
    }
}

fn redirect_https(host: &str, target: &str) -> Result<Response<ResponseBody>, ProxyError> {
    if host.is_empty() {
        return Err(ProxyError::BadRequest("no host to redirect to"));
    }
    let location = HeaderValue::try_from(format!("https://{host}{target}"))
        .map_err(|_| ProxyError::BadRequest("host or target not valid in a Location"))?;
    let mut response = text_response(StatusCode::PERMANENT_REDIRECT, Bytes::new());
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

fn header_str(headers: &http::HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request line for a request whose raw head was not seen (HTTP/2,
/// pipelined HTTP/1.1): `GET /a?b HTTP/2.0`.
fn rebuilt_request_line(req: &Request<Incoming>) -> Bytes {
    let version = match req.version() {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let target = match req.version() {
        Version::HTTP_2 => req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned(),
        _ => req.uri().to_string(),
    };
    Bytes::from(format!("{} {target} {version}", req.method()))
}

/// The access log facts known when the request head arrives; `raw_line`
/// is the request line as received, when the stream saw it.
fn log_entry(req: &Request<Incoming>, conn: &ConnInfo, raw_line: Option<Bytes>) -> Entry {
    let request_line = raw_line.unwrap_or_else(|| rebuilt_request_line(req));
    let headers = req.headers();
    let raw = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| Bytes::copy_from_slice(v.as_bytes()))
    };
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        header_str(headers, header::HOST).map(|h| route::host_without_port(h).to_owned())
    });
    Entry {
        client: conn.client.ip().to_canonical(),
        received: SystemTime::now(),
        request_line: Some(request_line),
        user: basic_auth_user(headers),
        status: 0,
        body_bytes: 0,
        referer: raw(header::REFERER),
        user_agent: raw(header::USER_AGENT),
        vhost: host.map(Bytes::from),
        port: conn.listener.port,
        pool: None,
        server: None,
        outcome: None,
        duration: std::time::Duration::ZERO,
    }
}

/// The user name of `Authorization: Basic …`, for `%u`.
fn basic_auth_user(headers: &http::HeaderMap) -> Option<Bytes> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, credentials) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim_ascii())
        .ok()?;
    let user = decoded.split(|b| *b == b':').next().unwrap_or_default();
    Some(Bytes::copy_from_slice(user))
}

/// Counts a connection's unfinished requests.
struct ConnRequest(Arc<AtomicUsize>);

impl ConnRequest {
    fn new(count: Arc<AtomicUsize>) -> ConnRequest {
        count.fetch_add(1, Ordering::Relaxed);
        ConnRequest(count)
    }
}

impl Drop for ConnRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_user_is_the_part_before_the_colon() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6c2VjcmV0".parse().unwrap(),
        );
        assert_eq!(basic_auth_user(&headers).unwrap(), "alice");
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_auth_user(&headers), None);
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_auth_user(&headers), None);
    }

    #[test]
    fn every_error_has_its_status() {
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::NoServer { pool: "p".into() }.status(), 503);
        assert_eq!(ProxyError::UpstreamTimeout.status(), 504);
        assert_eq!(ProxyError::BodyTooLarge.status(), 413);
        assert_eq!(ProxyError::HeadTooLarge.status(), 431);
        assert_eq!(ProxyError::BadRequest("x").status(), 400);
        assert!(error::body_for(StatusCode::BAD_GATEWAY).starts_with(b"502"));
    }
}
