//! Bodies stream both ways: 100 MiB up and down with matching checksums,
//! while the process's memory stays flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use sha2::{Digest, Sha256};

use crate::support::app::pattern_byte;
use crate::support::{AppServer, Client, Proto, TestPki, one_app};

const SIZE: usize = 100 * 1024 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Samples the process's RSS until dropped; returns the peak.
struct RssPeak(Arc<AtomicU64>, tokio::task::JoinHandle<()>);

impl RssPeak {
    fn start() -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let sampler = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                sampler.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssPeak(peak, task)
    }

    fn peak(self) -> u64 {
        self.1.abort();
        self.0.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_stream_with_flat_memory() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = one_app(&pki, &app, "").await;
    for proto in [Proto::H1, Proto::H2] {
        let client = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", proto);
        // Warm up allocators and connection state before the baseline.
        assert_eq!(client.get("/").await.status, 200);
        let baseline = rss_bytes();
        let rss = RssPeak::start();

        // Download: hash as it arrives, never holding it whole.
        let response = client
            .send(
                http::Request::get(format!("/download?bytes={SIZE}"))
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let (mut received, mut mismatch) = (0usize, None);
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if let Some(data) = frame.data_ref() {
                if mismatch.is_none() {
                    mismatch = data
                        .iter()
                        .enumerate()
                        .find(|(i, b)| **b != pattern_byte(received + i))
                        .map(|(i, _)| received + i);
                }
                received += data.len();
            }
        }
        assert_eq!((received, mismatch), (SIZE, None), "{proto:?} download");

        // Upload: generated as it is sent; the app server hashes it.
        let mut expected = Sha256::new();
        const CHUNK: usize = 256 * 1024;
        let chunk = Bytes::from((0..CHUNK).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
        for _ in 0..SIZE / CHUNK {
            expected.update(&chunk);
        }
        let frames = futures_util::stream::iter(
            (0..SIZE / CHUNK)
                .map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
        );
        let request = http::Request::post("/upload")
            .header("content-length", SIZE.to_string())
            .body(StreamBody::new(frames))
            .unwrap();
        let answer = crate::support::client::read(client.send(request).await).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.text(),
            format!("{SIZE} {:x}", expected.finalize()),
            "{proto:?} upload"
        );

        let grown = rss.peak().saturating_sub(baseline);
        eprintln!(
            "{proto:?}: RSS grew by {} KiB while moving 2 x 100 MiB",
            grown / 1024
        );
        assert!(
            grown < 48 * 1024 * 1024,
            "{proto:?}: memory grew by {grown} bytes: bodies are buffered"
        );
    }
    berth.stop().await;
}
