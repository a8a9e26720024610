//! Tests of whole configuration files, by theme:
//!
//! - `values.rs`: what a valid file turns into, defaults included, and the
//!   example of SPEC §2;
//! - `reports.rs`: how problems are reported (key, line:col, all at once),
//!   and the files shipped in `config/`;
//! - `checks.rs`, `pool_checks.rs`: every check on values, with what it
//!   refuses and what it accepts.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod checks;
mod pool_checks;
mod reports;
mod values;

fn ok(text: &str) -> Config {
    parse(text, Path::new("berth.toml")).unwrap_or_else(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        panic!("unexpected problems:\n{}", list.join("\n"))
    })
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Path::new("berth.toml")) {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(problems) => problems,
    }
}

/// The problems as `berth check` prints them, without the file name.
fn messages(text: &str) -> Vec<String> {
    problems(text)
        .iter()
        .map(|p| {
            let text = p.to_string();
            text.trim_start_matches("berth.toml:")
                .trim_start()
                .to_owned()
        })
        .collect()
}

const LISTENER: &str = "[[listener]]\nbind = \"127.0.0.1:8080\"\ntls = false\n";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Asserts `text` has exactly one problem, at `key`, whose message holds
/// `fragment`.
#[track_caller]
fn refused(text: &str, key: &str, fragment: &str) {
    let found = problems(text);
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{text}\n{list:#?}");
    assert_eq!(found[0].key, key, "{list:#?}");
    assert!(found[0].message.contains(fragment), "{list:#?}");
    assert!(
        found[0].position.is_some() || key == "listener",
        "{list:#?}"
    );
}

/// A file with one plain listener, then `body`.
fn with_listener(body: &str) -> String {
    format!("{LISTENER}{body}\n")
}

/// A file with one plain listener and the pool `web`, then `body`.
fn with_pool(pool: &str, body: &str) -> String {
    format!("{LISTENER}[pools.web]\n{pool}\n{body}\n")
}

/// A file with one listener whose keys are `keys`.
fn listener(keys: &str) -> String {
    format!("[[listener]]\n{keys}\n")
}

fn server(keys: &str) -> String {
    format!("[[pools.web.servers]]\n{keys}\n")
}
