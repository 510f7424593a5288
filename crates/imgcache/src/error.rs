//! The library's one error type, and [`Problem`]: a failed check that names where and what.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Every way an imgcache operation can fail. Messages say what, where, and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{text:?} is not a digest: expected sha256:<64 lowercase hex>")]
    InvalidDigest { text: String },

    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The archive itself is unusable (not an image archive, truncated, unsafe, ambiguous).
    #[error("{path}: {problem}")]
    Archive {
        path: PathBuf,
        problem: Box<Problem>,
    },

    #[error("{path}: no image matches {selector:?}; the archive holds {available}")]
    NoSuchImage {
        path: PathBuf,
        selector: String,
        available: String,
    },

    #[error("{path}: {selector:?} matches more than one image ({matches}); give a longer image ID")]
    AmbiguousImage {
        path: PathBuf,
        selector: String,
        matches: String,
    },

    #[error("invalid reference {text:?}: {reason}")]
    InvalidReference { text: String, reason: String },

    /// The registry could not be reached or answered with an error (after retries).
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },

    #[error(
        "registry {registry} wants credentials for {repository}: log in with `docker login {registry}` or `podman login {registry}`, or pass --creds USER:PASSWORD"
    )]
    Unauthorized {
        registry: String,
        repository: String,
    },

    #[error(
        "registry {registry} refused the credentials for {repository} (HTTP {status}); check them with `docker login {registry}`"
    )]
    Forbidden {
        registry: String,
        repository: String,
        status: u16,
    },

    #[error(
        "registry {registry}: TLS failure: {message}. {}",
        tls_advice(registry, message)
    )]
    Tls { registry: String, message: String },

    #[error("{reference}: not found in the registry")]
    ManifestNotFound { reference: String },

    #[error("{reference}: no image for platform {platform}; the index offers {available}")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    /// Content that does not match the digest it was asked for or promised.
    #[error("{what}: expected {expected}, got {found}")]
    DigestMismatch {
        what: String,
        expected: String,
        found: String,
    },

    #[error("{what} is larger than {limit} bytes: refusing it")]
    TooLarge { what: String, limit: u64 },

    #[error(
        "timed out after {seconds} s waiting for the lock {path} (another imgcache process holds it)"
    )]
    LockTimeout { path: PathBuf, seconds: u64 },

    #[error("{reference} is not in the cache; pull or import it first")]
    NotCached { reference: String },

    /// registries.conf forbids pulling this reference.
    #[error("{reference}: pulling it is blocked by the [[registry]] with prefix \"{prefix}\" in {}", file.display())]
    Blocked {
        reference: String,
        prefix: String,
        file: PathBuf,
    },

    /// A policy file that cannot be used (the CLI's exit code 2, like a bad option).
    #[error("policy {}: {message}", path.display())]
    Policy { path: PathBuf, message: String },

    /// The signature policy said no (a check, exit 1).
    #[error("{reference}: refused by the policy {} (scope {scope}): {reason}", policy.display())]
    PolicyRefused {
        reference: String,
        policy: PathBuf,
        scope: String,
        reason: String,
    },

    /// An index to push names platforms whose images are not all cached.
    #[error(
        "{reference}: the index names platforms that are not cached: {missing}; pull each with `imgcache pull --platform P {reference}`, or push one platform with --platform P"
    )]
    PlatformsNotCached { reference: String, missing: String },

    #[error("cache index {path}: {message}")]
    Index { path: PathBuf, message: String },

    #[error(
        "registry {registry}: blob {digest} not found in repository {repository} (HTTP 404): the registry lost it or the manifest is wrong"
    )]
    BlobNotFound {
        registry: String,
        repository: String,
        digest: String,
    },

    /// Options that do not fit together (the CLI's exit code 2).
    #[error("{0}")]
    Usage(String),

    /// The engine is not reachable (names its socket and how to point at another).
    #[error("{engine} at {endpoint} is not reachable: {message}")]
    EngineUnavailable {
        engine: String,
        endpoint: String,
        message: String,
    },

    /// The engine answered with an error (its message passed through).
    #[error("{engine}: {message}")]
    Engine { engine: String, message: String },
}

/// What to do about a TLS failure: a refused client certificate wants a certificate, anything
/// else a trusted CA.
fn tls_advice(registry: &str, message: &str) -> String {
    if message.contains("client certificate") {
        format!(
            "Give it a client certificate: client.cert with client.key in /etc/docker/certs.d/{registry}/ (or a hosts.toml `client`)"
        )
    } else {
        format!(
            "Trust its CA with --ca-cert FILE or /etc/docker/certs.d/{registry}/ca.crt, or use --insecure"
        )
    }
}

impl Error {
    /// True when the failure comes from the environment (I/O, resources) rather than from a
    /// check that said no; the CLI maps it to exit code 3.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Registry { .. }
                | Error::Unauthorized { .. }
                | Error::Forbidden { .. }
                | Error::Tls { .. }
                | Error::LockTimeout { .. }
                | Error::Index { .. }
                | Error::EngineUnavailable { .. }
                | Error::Engine { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The same error with `stand_in`, wherever it is the path named, replaced by `named`: a
    /// temporary file stood in for what the user gave.
    pub(crate) fn naming(mut self, stand_in: &Path, named: &Path) -> Self {
        if let Error::NotFound { path }
        | Error::Io { path, .. }
        | Error::Archive { path, .. }
        | Error::NoSuchImage { path, .. }
        | Error::AmbiguousImage { path, .. } = &mut self
            && path == stand_in
        {
            *path = named.into();
        }
        self
    }

    pub(crate) fn archive(path: impl Into<PathBuf>, problem: Problem) -> Self {
        Error::Archive {
            path: path.into(),
            problem: Box::new(problem),
        }
    }

    /// This error as a [`Problem`], for reports.
    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Archive { problem, .. } => (**problem).clone(),
            Error::NotFound { .. } => Problem::new(Check::NotFound, self.to_string()),
            _ if self.is_environment() => Problem::new(Check::Environment, self.to_string()),
            Error::InvalidDigest { .. } => Problem::new(Check::InvalidDigest, self.to_string()),
            Error::DigestMismatch {
                expected, found, ..
            } => Problem::new(Check::BlobDigest, self.to_string()).mismatch(expected, found),
            Error::TooLarge { .. } => Problem::new(Check::TooLarge, self.to_string()),
            Error::InvalidReference { .. } => {
                Problem::new(Check::InvalidReference, self.to_string())
            }
            Error::NoSuchImage { .. }
            | Error::AmbiguousImage { .. }
            | Error::ManifestNotFound { .. }
            | Error::BlobNotFound { .. }
            | Error::NoPlatform { .. }
            | Error::NotCached { .. }
            | Error::PlatformsNotCached { .. } => Problem::new(Check::NotFound, self.to_string()),
            Error::Blocked { .. } => Problem::new(Check::Blocked, self.to_string()),
            Error::PolicyRefused { .. } => Problem::new(Check::Signature, self.to_string()),
            _ => Problem::new(Check::Environment, self.to_string()),
        }
    }
}

/// Which check failed. Stable names: they appear in `--json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The file is not a tar archive (or not a compressed one).
    NotAnArchive,
    /// The archive ends before an entry or header it declares.
    Truncated,
    /// An entry name or link that could escape the archive, a device node, or another entry
    /// type no image archive needs.
    UnsafeEntry,
    /// Two entries share a name: engines disagree on which one wins.
    DuplicateEntry,
    /// Neither `manifest.json` nor `index.json`.
    NoManifest,
    /// A JSON entry over its size cap.
    TooLarge,
    /// A JSON entry that does not parse, or lacks a required field.
    InvalidJson,
    /// A digest that is not `sha256:<64 hex>`.
    InvalidDigest,
    /// An entry the manifest names is missing.
    MissingEntry,
    /// The config's bytes do not hash to the digest it is named by.
    ConfigDigest,
    /// The image ID differs from the one expected (`--expect`).
    ExpectedImageId,
    /// A manifest's bytes do not hash to the digest the index names it by.
    ManifestDigest,
    /// Layer count differs from the config's diff_id count.
    LayerCount,
    /// A layer's stored size differs from its descriptor.
    LayerSize,
    /// A layer's stored bytes do not hash to its blob digest.
    BlobDigest,
    /// A layer's uncompressed bytes do not hash to its diff_id.
    DiffId,
    /// A layer's data cannot be decompressed (corrupt stream, unsupported compression).
    LayerData,
    /// Something that does not make the image invalid but deserves a look.
    Warning,
    /// The file, image, reference or blob does not exist (or is not cached).
    NotFound,
    /// A reference that does not parse.
    InvalidReference,
    /// The mirror configuration forbids pulling the reference.
    Blocked,
    /// The signature policy refused the image (no, or no acceptable, signature).
    Signature,
    /// The file could not be read (permissions, I/O error): not a verdict on its content.
    Environment,
}

/// One failed check: what, where, expected and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub check: Check,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl Problem {
    pub fn new(check: Check, message: impl Into<String>) -> Self {
        Self {
            check,
            message: message.into(),
            entry: None,
            layer: None,
            expected: None,
            found: None,
        }
    }

    pub fn entry(mut self, name: impl Into<String>) -> Self {
        self.entry = Some(name.into());
        self
    }

    pub fn layer(mut self, index: usize) -> Self {
        self.layer = Some(index);
        self
    }

    pub fn mismatch(mut self, expected: impl ToString, found: impl ToString) -> Self {
        self.expected = Some(expected.to_string());
        self.found = Some(found.to_string());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let (Some(e), Some(g)) = (&self.expected, &self.found) {
            write!(f, " (expected {e}, found {g})")?;
        }
        Ok(())
    }
}
