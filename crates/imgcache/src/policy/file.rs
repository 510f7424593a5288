//! Reading containers' `policy.json` (containers-policy.json(5)): `default`, and
//! `transports.docker` scopes by reference, repository, namespace, registry and `*.domain`.
//! Other transports are ignored: imgcache names every image the docker way.
//!
//! Requirement types: `insecureAcceptAnything`, `reject`, `sigstoreSigned` (keyed: `keyPath`,
//! `keyPaths`, `keyData`, `keyDatas`; `signedIdentity`), and the extension `notationSigned`
//! (`trustStore`: files or directories of X.509 certificates; `trustedIdentities`:
//! `x509.subject: DN` entries or `*`). What cannot be checked offline or is not implemented
//! (`signedBy` GPG, `sigstoreSigned` with `fulcio`, `rekorPublicKey*` or `pki`) is kept as a
//! requirement that no signature satisfies, so it fails closed with a message saying why.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::cosign::CosignKey;
use super::notation::TrustStore;
use crate::error::Error;
use crate::reference::Reference;

/// A policy file, read whole at start (a few KB; keys and certificates loaded once).
pub struct Policy {
    pub(super) path: PathBuf,
    default: Vec<Requirement>,
    /// `transports.docker` scopes (looked up by exact name, so order does not matter); `""` is
    /// the transport's default.
    docker: Vec<(String, Vec<Requirement>)>,
}

/// One requirement of a scope; a scope's requirements must all be met.
pub enum Requirement {
    AcceptAnything,
    Reject,
    Sigstore {
        keys: Vec<CosignKey>,
        /// Where each key came from, for messages (`keyPath` or `keyData #N`).
        key_names: Vec<String>,
        identity: SignedIdentity,
    },
    Notation {
        trust: TrustStore,
        identities: Vec<String>,
    },
    /// A requirement imgcache cannot check offline: never satisfied, says why.
    Unsupported(String),
}

/// What the name a signature carries must be, relative to the image's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    MatchRepoDigestOrExact,
    MatchRepository,
    MatchExact,
    ExactReference(String),
    ExactRepository(String),
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

/// The size cap of a policy file: a policy is a few KB.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

impl Policy {
    /// Reads and checks `path` (every key and trust store it names is loaded now).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let fail = |message: String| Error::Policy {
            path: path.into(),
            message,
        };
        // Read through a cap, not by the file's stated size: a FIFO or /proc file says 0.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_POLICY_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::io(path, e))?;
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(fail(format!("larger than {MAX_POLICY_BYTES} bytes")));
        }
        let raw: RawPolicy = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let reqs = |list: Vec<Value>, scope: &str| -> Result<Vec<Requirement>, Error> {
            if list.is_empty() {
                return Err(fail(format!(
                    "{scope}: an empty list of requirements (containers treat it as an error; write [{{\"type\": \"insecureAcceptAnything\"}}])"
                )));
            }
            list.into_iter()
                .map(|v| requirement(v, dir).map_err(|m| fail(format!("{scope}: {m}"))))
                .collect()
        };
        let default = reqs(raw.default, "default")?;
        let mut docker = Vec::new();
        if let Some(scopes) = raw.transports.and_then(|mut t| t.remove("docker")) {
            for (scope, list) in scopes {
                let label = format!("transports.docker[{scope:?}]");
                docker.push((scope, reqs(list, &label)?));
            }
        }
        Ok(Self {
            path: path.into(),
            default,
            docker,
        })
    }

    /// The file this policy was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the `default` scope lets an image without a name in unsigned.
    pub fn accepts_unsigned_default(&self) -> bool {
        self.default
            .iter()
            .all(|r| matches!(r, Requirement::AcceptAnything))
    }

    /// The scope that applies to `reference` (its label, for messages) and its requirements:
    /// the most specific `transports.docker` scope, then `""`, then `default`.
    pub fn scope_for(&self, reference: &Reference) -> (String, &[Requirement]) {
        for candidate in scope_candidates(reference) {
            if let Some((s, r)) = self.docker.iter().find(|(s, _)| *s == candidate) {
                let label = if s.is_empty() {
                    "transports.docker[\"\"]".to_owned()
                } else {
                    format!("transports.docker[{s:?}]")
                };
                return (label, r);
            }
        }
        ("default".to_owned(), &self.default)
    }
}

/// Scopes from the most specific: `host/repo:tag` or `host/repo@digest`, `host/repo`, each
/// parent namespace, `host`, `*.parent.domains` of the host, and the transport default `""`.
fn scope_candidates(reference: &Reference) -> Vec<String> {
    let mut out = Vec::new();
    let repo = format!("{}/{}", reference.registry, reference.repository);
    if let Some(d) = &reference.digest {
        out.push(format!("{repo}@{d}"));
    }
    if let Some(t) = &reference.tag {
        out.push(format!("{repo}:{t}"));
    }
    let mut name = repo.as_str();
    out.push(name.to_owned());
    while let Some((parent, _)) = name.rsplit_once('/') {
        out.push(parent.to_owned());
        name = parent;
    }
    let host = reference.registry.split(':').next().unwrap_or("");
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        out.push(format!("*.{parent}"));
        rest = parent;
    }
    out.push(String::new());
    out
}

#[derive(Deserialize)]
struct RawPolicy {
    default: Vec<Value>,
    #[serde(default)]
    transports: Option<BTreeMap<String, BTreeMap<String, Vec<Value>>>>,
}

fn requirement(v: Value, dir: &Path) -> Result<Requirement, String> {
    let obj = v.as_object().ok_or("a requirement must be an object")?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a requirement without \"type\"")?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let list = |k: &str| -> Vec<String> {
        obj.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let path_of = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.into()
        } else {
            dir.join(p)
        }
    };
    match kind {
        "insecureAcceptAnything" => Ok(Requirement::AcceptAnything),
        "reject" => Ok(Requirement::Reject),
        "signedBy" => Ok(Requirement::Unsupported(
            "signedBy (GPG simple signing) is not supported by imgcache; use sigstoreSigned or notationSigned".into(),
        )),
        "sigstoreSigned" => {
            for keyless in ["fulcio", "pki"] {
                if obj.contains_key(keyless) {
                    return Ok(Requirement::Unsupported(format!(
                        "sigstoreSigned with {keyless:?} (keyless, certificate-based) cannot be checked offline by imgcache; give keyPath"
                    )));
                }
            }
            if obj.keys().any(|k| k.starts_with("rekorPublicKey")) {
                return Ok(Requirement::Unsupported(
                    "sigstoreSigned with rekorPublicKey* needs transparency-log evidence, which imgcache does not check offline; remove it to require the key alone".into(),
                ));
            }
            let mut keys = Vec::new();
            let mut key_names = Vec::new();
            let mut paths = list("keyPaths");
            paths.extend(text("keyPath"));
            for p in paths {
                let file = path_of(&p);
                let pem = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                keys.push(CosignKey::from_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?);
                key_names.push(file.display().to_string());
            }
            let mut datas = list("keyDatas");
            datas.extend(text("keyData"));
            for (i, d) in datas.iter().enumerate() {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .map_err(|e| format!("keyData #{}: not base64: {e}", i + 1))?;
                keys.push(CosignKey::from_pem(&pem).map_err(|e| format!("keyData #{}: {e}", i + 1))?);
                key_names.push(format!("keyData #{}", i + 1));
            }
            if keys.is_empty() {
                return Err("sigstoreSigned needs keyPath, keyPaths, keyData or keyDatas".into());
            }
            let identity = signed_identity(obj.get("signedIdentity"))?;
            Ok(Requirement::Sigstore {
                keys,
                key_names,
                identity,
            })
        }
        "notationSigned" => {
            let mut stores = list("trustStore");
            stores.extend(text("trustStore"));
            if stores.is_empty() {
                return Err("notationSigned needs trustStore (certificate files or directories)".into());
            }
            let trust = TrustStore::load(&stores.iter().map(|s| path_of(s)).collect::<Vec<_>>())?;
            if trust.is_empty() {
                return Err(format!("notationSigned: no certificate in {}", stores.join(", ")));
            }
            let identities = list("trustedIdentities");
            for i in &identities {
                super::notation::check_trusted_identity(i)?;
            }
            Ok(Requirement::Notation { trust, identities })
        }
        other => Err(format!("unknown requirement type {other:?}")),
    }
}

fn signed_identity(v: Option<&Value>) -> Result<SignedIdentity, String> {
    let Some(v) = v else {
        return Ok(SignedIdentity::MatchRepoDigestOrExact);
    };
    let field = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(format!("signedIdentity needs {k:?}"))
    };
    match v.get("type").and_then(Value::as_str) {
        Some("matchRepoDigestOrExact") => Ok(SignedIdentity::MatchRepoDigestOrExact),
        Some("matchRepository") => Ok(SignedIdentity::MatchRepository),
        Some("matchExact") => Ok(SignedIdentity::MatchExact),
        Some("exactReference") => Ok(SignedIdentity::ExactReference(field("dockerReference")?)),
        Some("exactRepository") => Ok(SignedIdentity::ExactRepository(field("dockerRepository")?)),
        Some("remapIdentity") => Ok(SignedIdentity::RemapIdentity {
            prefix: field("prefix")?,
            signed_prefix: field("signedPrefix")?,
        }),
        other => Err(format!("unknown signedIdentity type {other:?}")),
    }
}

impl SignedIdentity {
    /// Whether `signed` (the `docker-reference` a signature carries) names `image` as this
    /// identity rule wants (the semantics of containers/image).
    pub fn accepts(&self, image: &Reference, signed: &str) -> bool {
        let Ok(signed_ref) = Reference::parse(signed) else {
            return false;
        };
        let repo = |r: &Reference| format!("{}/{}", r.registry, r.repository);
        let exact = |a: &Reference, b: &Reference| a.tag.is_some() && a.digest.is_none() && a == b;
        match self {
            SignedIdentity::MatchRepoDigestOrExact => {
                if image.digest.is_some() {
                    repo(image) == repo(&signed_ref)
                } else {
                    exact(image, &signed_ref)
                }
            }
            SignedIdentity::MatchRepository => repo(image) == repo(&signed_ref),
            SignedIdentity::MatchExact => exact(image, &signed_ref),
            SignedIdentity::ExactReference(want) => {
                Reference::parse(want).is_ok_and(|w| w == signed_ref)
            }
            SignedIdentity::ExactRepository(want) => {
                Reference::parse(want).is_ok_and(|w| repo(&w) == repo(&signed_ref))
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let text = image.to_string();
                let remapped = match text.strip_prefix(prefix.as_str()) {
                    Some(rest) if rest.is_empty() || rest.starts_with(['/', ':', '@']) => {
                        format!("{signed_prefix}{rest}")
                    }
                    _ => text,
                };
                Reference::parse(&remapped)
                    .is_ok_and(|r| SignedIdentity::MatchRepoDigestOrExact.accepts(&r, signed))
            }
        }
    }

    /// Whether this rule can judge a signature that names no repository (a cosign 3 bundle
    /// or a notation signature sign the digest alone): the rules that compare against the
    /// image's own name can (the digest is checked), those that demand a given name cannot.
    pub fn allows_unnamed(&self) -> bool {
        matches!(
            self,
            SignedIdentity::MatchRepoDigestOrExact | SignedIdentity::MatchRepository
        )
    }
}
