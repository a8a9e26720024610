//! berth running in-process on ephemeral ports, with its files in a
//! temporary directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use berth::server::{self, Running};

pub struct Berth {
    pub dir: tempfile::TempDir,
    /// Bound address of each `[[listener]]`, in config order.
    pub addrs: Vec<SocketAddr>,
    running: Option<Running>,
}

#[derive(Default)]
pub struct Builder {
    global: String,
    body: String,
    certs: Vec<(String, String)>,
    /// A directory to run in instead of a new one (a restart).
    dir: Option<tempfile::TempDir>,
}

impl Berth {
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The running state, for tests that play the operator.
    pub fn shared(&self) -> &std::sync::Arc<berth::proxy::Shared> {
        &self.running.as_ref().unwrap().shared
    }

    /// Where run-time changes go through (reload, servers).
    pub fn control(&self) -> &std::sync::Arc<berth::control::Control> {
        &self.running.as_ref().unwrap().control
    }

    /// The admin API's address (`admin = "127.0.0.1:0"` in `global`).
    pub fn admin(&self) -> SocketAddr {
        self.running
            .as_ref()
            .unwrap()
            .admin
            .expect("no admin API configured")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("berth.toml")
    }

    /// Open client connections, across listeners.
    pub fn open_connections(&self) -> usize {
        self.running.as_ref().unwrap().open_connections()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("logs/access.log")
    }

    /// Drains berth (SPEC §9) and returns the access log's lines.
    pub async fn stop(self) -> Vec<String> {
        self.stop_keeping_dir().await.0
    }

    /// Drains berth and returns the log's lines and its directory, to
    /// start again in it.
    pub async fn stop_keeping_dir(mut self) -> (Vec<String>, tempfile::TempDir) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        let lines = std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (lines, self.dir)
    }

    /// Starts draining (as SIGTERM does) without waiting for it.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<usize> {
        let running = self.running.take().expect("already stopped");
        tokio::spawn(running.shutdown())
    }
}

impl Builder {
    /// Extra `[global]` keys.
    pub fn global(mut self, keys: &str) -> Builder {
        self.global.push_str(keys);
        self.global.push('\n');
        self
    }

    /// Listeners, routes and pools; `{certs}` stands for the certificate
    /// directory's path.
    pub fn config(mut self, toml: &str) -> Builder {
        self.body.push_str(toml);
        self.body.push('\n');
        self
    }

    /// A file to put in `certs/`.
    pub fn cert(mut self, name: &str, pem: String) -> Builder {
        self.certs.push((name.to_owned(), pem));
        self
    }

    /// Runs in `dir`, as a restart of the berth that ran there: same
    /// certificates, state file and log.
    pub fn in_dir(mut self, dir: tempfile::TempDir) -> Builder {
        self.dir = Some(dir);
        self
    }

    pub async fn try_start(self) -> Result<Berth, server::StartError> {
        let dir = match self.dir {
            Some(dir) => dir,
            None => tempfile::tempdir().unwrap(),
        };
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        // (A restart in the same directory finds the files already there.)
        for (name, pem) in &self.certs {
            std::fs::write(certs.join(name), pem).unwrap();
        }
        let text = format!(
            "[global]\ncerts = {:?}\naccess_log = {:?}\nstate_file = {:?}\n{}\n{}",
            certs.display().to_string(),
            dir.path().join("logs/access.log").display().to_string(),
            dir.path().join("state/berth.state").display().to_string(),
            self.global,
            self.body
        )
        .replace("{certs}", &certs.display().to_string());
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, &text).unwrap();
        let config = berth::config::parse(&text, &path)
            .unwrap_or_else(|problems| panic!("test config refused: {problems:?}\n{text}"));
        let options = server::Options {
            config_path: Some(path),
            certs: None,
        };
        let running = server::start(config, options).await?;
        Ok(Berth {
            dir,
            addrs: running.listeners.clone(),
            running: Some(running),
        })
    }

    pub async fn start(self) -> Berth {
        self.try_start()
            .await
            .unwrap_or_else(|err| panic!("berth did not start: {err}"))
    }
}
