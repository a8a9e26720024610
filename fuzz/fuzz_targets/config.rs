//! `config::parse` on arbitrary text: never panics; a config it accepts
//! has the shape validation promises.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match berth::config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            assert!(!config.listeners.is_empty());
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for problem in &problems {
                let _ = problem.to_string();
            }
        }
    }
});
