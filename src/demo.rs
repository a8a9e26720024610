//! `berth demo`: berth with nothing set up. A certificate for `localhost`
//! made in memory, two app servers in this process that say which one
//! answered, TLS on 127.0.0.1:8443, and the curl commands to try.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{cli, config, server, tls};

pub const DEMO_ADDR: &str = "127.0.0.1:8443";
pub const DEMO_ADMIN: &str = "127.0.0.1:9090";

pub fn main() -> ExitCode {
    let runtime = match cli::build_runtime(0) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let cert = match tls::self_signed(&["localhost"]) {
        Ok(cert) => cert,
        Err(err) => {
            eprintln!("error: cannot make the demo certificate: {err}");
            return ExitCode::from(2);
        }
    };
    let cert_file = std::env::temp_dir().join("berth-demo-cert.pem");
    if let Err(err) = std::fs::write(&cert_file, &cert.cert_pem) {
        eprintln!("error: cannot write {}: {err}", cert_file.display());
        return ExitCode::from(2);
    }
    let mut apps = Vec::new();
    for name in ["app01", "app02"] {
        match app_server(name).await {
            Ok(addr) => apps.push(addr),
            Err(err) => {
                eprintln!("error: cannot start demo app server {name}: {err}");
                return ExitCode::from(2);
            }
        }
    }
    let text = demo_config(&apps);
    let config = match config::parse(&text, &PathBuf::from("(demo)")) {
        Ok(config) => config,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(1);
        }
    };
    let running = match server::start(
        config,
        server::Options {
            config_path: None,
            certs: Some(cert.store),
        },
    )
    .await
    {
        Ok(running) => running,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    let ca = cert_file.display();
    println!(
        "berth demo: TLS on https://localhost:8443 → app01 {} and app02 {}\n\
         The access log is printed below. Try, in another terminal:\n\n  \
         curl --cacert {ca} https://localhost:8443/\n  \
         curl --cacert {ca} https://localhost:8443/ https://localhost:8443/   # round robin over app01 and app02\n  \
         curl --cacert {ca} --http2 -v https://localhost:8443/hello\n  \
         curl --cacert {ca} https://localhost:8443/berth-health\n  \
         curl --cacert {ca} -d 'some data' https://localhost:8443/upload\n\n\
         The admin API is on http://{DEMO_ADMIN}:\n\n  \
         curl http://{DEMO_ADMIN}/status\n  \
         curl http://{DEMO_ADMIN}/metrics\n  \
         curl -X PUT -d '{{\"state\":\"drain\"}}' http://{DEMO_ADMIN}/pools/demo/servers/app02   # new sessions go to app01\n  \
         curl -X POST -d '{{\"name\":\"app03\",\"addr\":\"{}\"}}' http://{DEMO_ADMIN}/pools/demo/servers   # app01 again, as app03\n\n\
         Stop with Ctrl-C.",
        apps[0], apps[1], apps[0]
    );
    cli::serve_until_signalled(running).await
}

fn demo_config(apps: &[SocketAddr]) -> String {
    // Run-time changes of the demo are kept apart from any real state file.
    let state = std::env::temp_dir().join(format!("berth-demo-{}.state", std::process::id()));
    format!(
        r#"
[global]
access_log = "-"
log_format = "combined_plus"
admin = "{DEMO_ADMIN}"
state_file = {state:?}

[[listener]]
bind = "{DEMO_ADDR}"
tls = true
health_path = "/berth-health"
hsts = "max-age=31536000"

[[route]]
pool = "demo"

[pools.demo]
balance = "round_robin"

[[pools.demo.servers]]
name = "app01"
addr = "{}"

[[pools.demo.servers]]
name = "app02"
addr = "{}"
"#,
        apps[0],
        apps[1],
        state = state.display().to_string(),
    )
}

/// A tiny app server on 127.0.0.1 that says who it is.
async fn app_server(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let (head, body) = req.into_parts();
                    let received = body.collect().await.map_or(0, |b| b.to_bytes().len());
                    let forwarded_for = head
                        .headers
                        .get("x-forwarded-for")
                        .and_then(|v| v.to_str().ok());
                    let text = format!(
                        "hello from {name}: {} {} (X-Forwarded-For: {}, {received} body bytes)\n",
                        head.method,
                        head.uri,
                        forwarded_for.unwrap_or("-"),
                    );
                    let mut response = Response::new(Full::new(Bytes::from(text)));
                    response
                        .headers_mut()
                        .insert("x-served-by", http::HeaderValue::from_static(name));
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
