//! A real TLS client (rustls) speaking HTTP/1.1 or HTTP/2 through hyper.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    pub addr: SocketAddr,
    pub sni: String,
    pub proto: Proto,
}

/// A response with its body read whole.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or("?"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn new(ca_pem: &str, addr: SocketAddr, sni: &str, proto: Proto) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = match proto {
            Proto::H1 => vec![b"http/1.1".to_vec()],
            Proto::H2 => vec![b"h2".to_vec()],
        };
        Client {
            connector: TlsConnector::from(Arc::new(config)),
            addr,
            sni: sni.to_owned(),
            proto,
        }
    }

    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// A TLS connection, handshake done.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from(self.sni.clone()).unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }

    /// Sends one request on a new connection and returns the response head
    /// with its streaming body.
    pub async fn send<B>(&self, req: Request<B>) -> Response<Incoming>
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.tls().await;
        let req = self.fill_in(req);
        match self.proto {
            Proto::H1 => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                sender.send_request(req).await.unwrap()
            }
            Proto::H2 => {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender.send_request(req).await.unwrap()
            }
        }
    }

    /// GET `path` on a new connection; the body read whole.
    pub async fn get(&self, path: &str) -> Answer {
        let req = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
        read(self.send(req).await).await
    }

    /// Sets what each protocol needs: `Host` for HTTP/1.1, an absolute URI
    /// (`:authority`) for HTTP/2.
    fn fill_in<B>(&self, mut req: Request<B>) -> Request<B> {
        let authority = format!("{}:{}", self.sni, self.addr.port());
        match self.proto {
            Proto::H1 => {
                if !req.headers().contains_key("host") {
                    req.headers_mut().insert("host", authority.parse().unwrap());
                }
            }
            Proto::H2 => {
                *req.version_mut() = http::Version::HTTP_2;
                if req.uri().authority().is_none() {
                    let uri = format!("https://{authority}{}", req.uri());
                    *req.uri_mut() = uri.parse().unwrap();
                }
            }
        }
        req
    }
}

pub async fn read(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}
