//! Arbitrary bytes as a whole archive file: Archive::open and verify_file (fast, and deep for
//! inputs up to 1 MB), as a plain file and gzip- and zstd-compressed (the outer-compressed,
//! streamed path). Must not panic or hang; the levels must agree (see open_and_verify), and
//! the plain and compressed files must get the same verdict.
#![no_main]

use std::sync::OnceLock;

use imgcache_fuzz::{MemFile, verify_stored_three_ways};
use libfuzzer_sys::fuzz_target;

const DEEP_MAX: usize = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    static FILE: OnceLock<MemFile> = OnceLock::new();
    let file = FILE.get_or_init(|| MemFile::new("imgcache-fuzz-archive"));
    let deep = data.len() <= DEEP_MAX;
    // The bytes, and the same compressed as a whole (a gzipped `docker save`, a zstd one).
    verify_stored_three_ways(file, data, deep, None);
});
