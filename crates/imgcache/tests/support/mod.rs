//! Helpers shared by the library's integration tests (each test file is its own binary and
//! uses only part of this: `mod support;`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The variables of `<testenv>/env.sh` (`$IMGCACHE_TESTENV`, default `/tmp/imgcache-testenv`).
pub fn env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let base = std::env::var_os("IMGCACHE_TESTENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/imgcache-testenv"));
        let path = base.join("env.sh");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: start the test environment first: run scripts/test.sh (or scripts/testenv/up.sh)",
                path.display()
            )
        });
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches(['\'', '"']).to_owned()))
            .collect()
    })
}

/// One variable of `env.sh`.
pub fn var(name: &str) -> &'static str {
    env()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from env.sh: run scripts/test.sh"))
}

/// Sets a file's permission bits.
#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A file no engine takes for an image archive.
pub fn text_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("not-an-image.tar");
    std::fs::write(&p, "this is a text file, not a tarball\n").unwrap();
    p
}

/// The message of an [`Error::Engine`]; any other result fails the test.
pub fn engine_message(r: Result<(), imgcache::Error>) -> String {
    match r {
        Err(imgcache::Error::Engine { message, .. }) => message,
        other => panic!("expected Error::Engine, got {other:?}"),
    }
}

/// The regular files of the tar at `path`, in order: (name, bytes).
pub fn regular_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ar = tar::Archive::new(file);
    let mut files = Vec::new();
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.push((name, data));
    }
    files
}
