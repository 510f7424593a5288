//! imgcache: a container-image cache that knows an image by its content digest.
//!
//! The image ID (sha256 of the config blob) is the one identity every archive dialect and
//! every engine can produce. This crate reads image archives of every dialect
//! ([`Archive`]), and verifies them ([`verify_file`]) at two levels:
//!
//! - [`Level::Fast`] reads tar headers and the small JSON entries only (kilobytes, whatever
//!   the image size): it catches truncation, a swapped or edited config, missing layers.
//! - [`Level::Deep`] also decompresses and hashes every layer, in parallel, in bounded memory:
//!   it catches any changed byte.
//!
//! The [`Cache`] pulls images from any registry into a content-addressed store and answers
//! the same questions about them, one method per command:
//!
//! ```no_run
//! # async fn demo() -> Result<(), imgcache::Error> {
//! use imgcache::{Cache, Level, PullOptions};
//!
//! let cache = Cache::open(&imgcache::cache::default_root())?;
//! let pulled = cache.pull("127.0.0.1:5000/busybox:v1", &PullOptions::default()).await?;
//! println!("{} is image {}", pulled.reference, pulled.image_id);
//! assert!(cache.verify(&pulled.reference, Level::Deep)?.ok);
//! for entry in cache.ls()? {
//!     println!("{} {} {}", entry.reference, entry.image_id, entry.size);
//! }
//! cache.rm(&pulled.reference)?;
//! cache.prune(None)?;
//! assert!(cache.fsck(true, false)?.ok);
//! # Ok(()) }
//! ```
//!
//! The modules follow the flow of an image: [`reference`] names it, [`registry`] fetches it as a
//! verified stream into the [`store`] (blobs, by digest) and the [`index`] (what each reference
//! resolved to); [`archive`] reads any tarball dialect and writes loadable ones, [`verify`]
//! checks them, [`engine`] asks Docker, Podman, containerd or CRI-O what they hold and hands
//! them images. [`cache`] is the facade over all of it, one file per command (`cache/pull.rs`,
//! `cache/load.rs`, ...). [`digest`], [`platform`], [`compression`], [`lock`] and [`error`]
//! are the small shared pieces.
//!
//! Verifying a tarball a tool keeps:
//!
//! ```no_run
//! use imgcache::{verify_file, ImageId, Level, VerifyOptions};
//!
//! let expect = ImageId::parse_user(
//!     "sha256:0b6a0d4f0e7b0f8c4ea3d8a3e5b3f1f6a0e6c4b7f7e6a9c1e2d3f4a5b6c7d8e9",
//! )?;
//! let opts = VerifyOptions { level: Level::Fast, expect: Some(expect), image: None };
//! let report = verify_file("kicbase.tar".as_ref(), &opts);
//! if !report.ok {
//!     // Remove the cached tarball and fetch it again.
//! }
//! # Ok::<(), imgcache::Error>(())
//! ```

pub mod archive;
pub mod cache;
pub mod compression;
pub mod digest;
pub mod engine;
pub mod error;
pub mod index;
pub mod lock;
pub mod platform;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod serve;
pub mod store;
pub mod verify;

pub use archive::{Archive, ArchiveImage, Dialect, Layer, Platform};
pub use cache::{Cache, PullOptions, PullReport};
pub use compression::Compression;
pub use digest::{BlobDigest, DiffId, Digest, ImageId};
pub use error::{Check, Error, Problem};
pub use platform::PlatformSpec;
pub use reference::Reference;
pub use verify::{FileReport, ImageReport, Level, VerifyOptions, verify_file, verify_paths};
