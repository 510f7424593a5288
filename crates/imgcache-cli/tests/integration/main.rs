//! Integration tests of the `imgcache` binary: one test binary, per-test temp dirs.
//!
//! Tests that need real components (registries, engines, tarballs made by real tools) read the
//! environment that `scripts/testenv/up.sh` writes (`$IMGCACHE_TESTENV/env.sh`); run them with
//! `scripts/test.sh`, which starts everything and stops it afterwards.

mod support;

mod archives;
mod cache;
mod containerd_versions;
mod damage;
mod dialects;
mod digests;
mod docker_saves;
mod engine_disk;
mod engines;
mod faults;
mod hostile;
mod load_reuse;
mod mirrors_fleet;
mod proxy;
mod push_sync;
mod reliability;
mod save_import;
mod serve_clients;
mod serve_hostile;
mod signature_cases;
mod signature_cose;
mod signature_hostile;
mod signature_travel;
mod signatures;
mod tls_proxies;
mod token_auth;
