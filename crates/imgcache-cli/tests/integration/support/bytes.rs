//! Digests, base64, random bytes and names no other test uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The hex part of a `sha256:` digest.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Unix time in nanoseconds.
pub fn nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A name (of a repository, a socket) no other test, nor an earlier run, uses.
pub fn unique_name(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{what}-{}-{}-{}",
        std::process::id(),
        nanos() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Incompressible bytes, different on every call.
pub fn random_bytes(len: usize) -> Vec<u8> {
    static N: AtomicU64 = AtomicU64::new(1);
    let mut x = nanos()
        ^ (u64::from(std::process::id()) << 32)
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x |= 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
