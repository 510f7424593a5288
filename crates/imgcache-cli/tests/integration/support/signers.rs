//! The real signing tools of `scripts/testenv/signers.sh` (cosign 2.5 of Debian trixie, cosign
//! 3.1 and notation 1.3 of sid), run offline against loopback registries, each run with a clean
//! environment and a HOME of the test's own (nothing in /root, no credentials of the machine).
//!
//! The sid tools may be missing (`TEST_SIGNERS_SKIP` in env.sh says why): [`cosign3`] and
//! [`notation`] then print `SKIP <test>: <reason>` and give `None`, and the test returns.
//!
//! Where the tools put signatures in a registry without the referrers API (docker-registry 2.8):
//! - cosign 2: a manifest tagged `sha256-<hex>.sig` in the image's repository (a simple-signing
//!   payload naming the repository as `critical.identity.docker-reference`);
//! - cosign 3: a Sigstore bundle (v0.3, a DSSE in-toto statement, no repository named) as an
//!   OCI 1.1 referrer, listed in the referrers-tag-schema index tagged `sha256-<hex>`, one more
//!   entry per signing;
//! - notation: a JWS envelope as a referrer, in the same `sha256-<hex>` index.
//!
//! Tool behaviour found out for these helpers (2026-12, Debian 2.5.0-2+b5, 3.1.1-2, 1.3.2-2):
//! - `cosign version` says `GitVersion: devel`: the Debian package version is in env.sh
//!   (`TEST_COSIGN2_VERSION`, ...).
//! - cosign 3 `sign` without `--signing-config` fetches the signing config from Sigstore's TUF
//!   repository (fails offline); with it but without `--trusted-root` it still tries TUF (a
//!   WARNING, and `~/.sigstore/root` written), so both files of signers.sh are passed.
//! - cosign 3 `verify --offline` is deprecated (a warning; it works without it); cosign 3
//!   verifies cosign 2's `.sig` signatures too, cosign 2 does not see cosign 3's bundles ("no
//!   signatures found").
//! - `--sign-container-identity` works in cosign 2 only; cosign 3 accepts it as deprecated and
//!   has no repository in its bundle at all. Neither `verify` checks the signed identity
//!   against the repository it verifies (the claim is only printed on stdout).
//! - notation honours `XDG_CONFIG_HOME`, else `$HOME/.config/notation`; 1.3 reads only
//!   `trustpolicy.json` (a `trustpolicy.oci.json` alone is "trust policy is not present").
//!   `--expiry` takes any Go duration (`2s`), though its help speaks of m and h.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{
    Manifest, PrivateRegistry, Run, Sandbox, copy_between_registries, digest_of, env, output_of,
    path_str, to_run,
};

/// The password of every test key pair (given to cosign in its environment only; never printed).
const COSIGN_TEST_PASSWORD: &str = "imgcache-test-key-password";

/// The PATH of every tool run (the environment is cleared otherwise).
const TOOL_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// Flags of cosign's `sign` and `verify` for a loopback registry over plain HTTP.
const COSIGN_REGISTRY_FLAGS: [&str; 2] = ["--allow-http-registry", "--allow-insecure-registry"];

/// A cosign of the test environment.
#[derive(Debug)]
pub struct Cosign {
    /// 2 (trixie) or 3 (sid).
    pub major: u32,
    pub bin: PathBuf,
    /// The Debian package version (`cosign version` only says `devel`).
    pub version: String,
    /// cosign 3: `signing-config create --no-default-*` (no Fulcio, OIDC, Rekor, TSA).
    signing_config: Option<PathBuf>,
    /// cosign 3: `trusted-root create --no-default-*` (empty: no TUF lookup).
    trusted_root: Option<PathBuf>,
}

/// notation of the test environment.
#[derive(Debug)]
pub struct Notation {
    pub bin: PathBuf,
    /// The Debian package version.
    pub version: String,
}

/// What signers.sh wrote into env.sh.
struct Signers {
    cosign2: Cosign,
    cosign3: Option<Cosign>,
    notation: Option<Notation>,
    /// `(component, reason)` of `TEST_SIGNERS_SKIP`.
    skipped: Vec<(String, String)>,
}

/// A value of env.sh as the shell reads it (`printf %q` escapes spaces and punctuation).
fn unquoted(v: &str) -> String {
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return s.to_owned();
    }
    let body = v.strip_prefix("$'").and_then(|s| s.strip_suffix('\''));
    let mut out = String::new();
    let mut chars = body.unwrap_or(v).chars();
    while let Some(c) = chars.next() {
        match (c, body.is_some()) {
            ('\\', true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            },
            ('\\', false) => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

fn signers_env() -> &'static Signers {
    static S: OnceLock<Signers> = OnceLock::new();
    S.get_or_init(|| {
        let vars = &env().vars;
        let var = |k: &str| vars.get(k).map(|v| unquoted(v));
        let need = |k: &str| {
            var(k).unwrap_or_else(|| {
                panic!("{k} is not in env.sh: run scripts/testenv/signers.sh (up.sh does, unless SIGNERS=0) and add its env.sh to $IMGCACHE_TESTENV/env.sh")
            })
        };
        let skipped = var("TEST_SIGNERS_SKIP")
            .map(|s| {
                s.split("; ")
                    .map(|e| {
                        let (c, why) = e.split_once(": ").unwrap_or((e, ""));
                        (c.to_owned(), why.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cosign2 = Cosign {
            major: 2,
            bin: need("TEST_COSIGN2").into(),
            version: need("TEST_COSIGN2_VERSION"),
            signing_config: None,
            trusted_root: None,
        };
        let cosign3 = var("TEST_COSIGN3").map(|bin| Cosign {
            major: 3,
            bin: bin.into(),
            version: need("TEST_COSIGN3_VERSION"),
            signing_config: Some(need("TEST_COSIGN3_SIGNING_CONFIG").into()),
            trusted_root: Some(need("TEST_COSIGN3_TRUSTED_ROOT").into()),
        });
        let notation = var("TEST_NOTATION").map(|bin| Notation {
            bin: bin.into(),
            version: need("TEST_NOTATION_VERSION"),
        });
        Signers { cosign2, cosign3, notation, skipped }
    })
}

/// `None` after printing `SKIP test: reason` when signers.sh left `component` out.
fn or_skip<T>(tool: Option<&'static T>, test: &str, component: &str) -> Option<&'static T> {
    if tool.is_none() {
        let why = signers_env()
            .skipped
            .iter()
            .find(|(c, _)| c == component)
            .map_or("not in env.sh (no reason recorded)", |(_, w)| w.as_str());
        eprintln!("SKIP {test}: {component}: {why}");
    }
    tool
}

/// cosign 2.5 of trixie (always there: signers.sh fails without it).
pub fn cosign2() -> &'static Cosign {
    &signers_env().cosign2
}

/// cosign 3.1 of sid, or `None` after a `SKIP test: reason` line.
pub fn cosign3(test: &str) -> Option<&'static Cosign> {
    or_skip(signers_env().cosign3.as_ref(), test, "cosign3")
}

/// notation 1.3 of sid, or `None` after a `SKIP test: reason` line.
pub fn notation(test: &str) -> Option<&'static Notation> {
    or_skip(signers_env().notation.as_ref(), test, "notation")
}

/// `PROGRAM ARG...` of `cmd`, for messages (never its environment: it may hold a password).
fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command of `bin` with a cleared environment: only PATH and HOME=`home` (created).
fn tool_command(bin: &Path, home: &Path) -> Command {
    fs::create_dir_all(home).unwrap();
    let mut c = Command::new(bin);
    c.env_clear().env("PATH", TOOL_PATH).env("HOME", home);
    c
}

/// Runs `cmd` (stdin empty) to the end.
fn run_tool(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", shown(cmd)));
    to_run(out)
}

/// Runs `cmd`, which must exit 0 (the panic shows the command, its stdout and stderr).
fn run_ok(cmd: &mut Command) -> Run {
    let what = shown(cmd);
    run_tool(cmd).ok(&what)
}

/// The verdict of a verify run: exit 0 is `true`; a failure is `false` only when the tool says
/// a signature did not verify or none is there (`refusals`), any other failure panics.
fn verdict(cmd: &mut Command, refusals: &[&str]) -> bool {
    let what = shown(cmd);
    let r = run_tool(cmd);
    if r.code == 0 {
        return true;
    }
    assert!(
        refusals.iter().any(|s| r.stderr.contains(s)),
        "{what}: exit {} for another reason than a signature that does not verify\nstdout:\n{}\nstderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    false
}

/// What cosign's `verify` says when the signatures do not verify or there are none.
const COSIGN_REFUSALS: [&str; 3] = [
    "no matching signatures",
    "no matching attestations",
    "no signatures found",
];

/// A cosign key pair (ECDSA P-256, the private key encrypted with the test password).
#[derive(Clone, Debug)]
pub struct CosignKeys {
    /// `PREFIX.key` (`ENCRYPTED SIGSTORE PRIVATE KEY`)
    pub key: PathBuf,
    /// `PREFIX.pub` (PEM public key)
    pub pub_key: PathBuf,
    /// The HOME of the cosign runs with these keys (`dir/cosign-home`).
    home: PathBuf,
}

impl CosignKeys {
    /// `cosign generate-key-pair --output-key-prefix dir/cosign`: dir/cosign.key + dir/cosign.pub.
    pub fn generate(tool: &Cosign, dir: &Path) -> Self {
        Self::generate_named(tool, dir, "cosign")
    }

    /// The same with the prefix `dir/name` (a second pair in the same directory).
    pub fn generate_named(tool: &Cosign, dir: &Path, name: &str) -> Self {
        let prefix = dir.join(name);
        let keys = CosignKeys {
            key: prefix.with_extension("key"),
            pub_key: prefix.with_extension("pub"),
            home: dir.join("cosign-home"),
        };
        // cosign asks before overwriting (and fails on an empty stdin)
        assert!(!keys.key.exists(), "{} exists already", keys.key.display());
        run_ok(
            tool_command(&tool.bin, &keys.home)
                .env("COSIGN_PASSWORD", COSIGN_TEST_PASSWORD)
                .arg("generate-key-pair")
                .arg("--output-key-prefix")
                .arg(&prefix),
        );
        assert!(
            keys.key.is_file() && keys.pub_key.is_file(),
            "cosign wrote no {}.key/.pub",
            prefix.display()
        );
        keys
    }
}

impl Cosign {
    /// `cosign sign` of `reference` (`HOST:PORT/REPO@sha256:…`) with `keys`, offline; `extra`
    /// flags before the reference.
    fn sign_args(&self, keys: &CosignKeys, reference: &str, extra: &[&str]) {
        let mut c = tool_command(&self.bin, &keys.home);
        c.env("COSIGN_PASSWORD", COSIGN_TEST_PASSWORD)
            .arg("sign")
            .arg("--key")
            .arg(&keys.key)
            .args(COSIGN_REGISTRY_FLAGS)
            .arg("--yes");
        match self.major {
            // no Rekor upload (the default would upload to rekor.sigstore.dev)
            2 => {
                c.arg("--tlog-upload=false");
            }
            // no services (the signing config), no TUF (the trusted root)
            _ => {
                c.arg("--signing-config")
                    .arg(self.signing_config.as_ref().unwrap())
                    .arg("--trusted-root")
                    .arg(self.trusted_root.as_ref().unwrap());
            }
        }
        run_ok(c.args(extra).arg(reference));
    }

    /// `cosign save --dir DIR REFERENCE`: the image and its signatures as an OCI layout
    /// (cosign's `kind` annotations, no subject); asserts exit 0.
    pub fn save_layout(&self, reference: &str, dir: &Path) {
        let home = dir.with_extension("cosign-home");
        run_ok(
            tool_command(&self.bin, &home)
                .arg("save")
                .args(COSIGN_REGISTRY_FLAGS)
                .arg("--dir")
                .arg(dir)
                .arg(reference),
        );
    }

    /// Signs `reference` (by digest) with `keys`; asserts cosign exits 0.
    pub fn sign(&self, keys: &CosignKeys, reference: &str) {
        self.sign_args(keys, reference, &[]);
    }

    /// cosign 2 only: signs `reference` with a claim that names `identity` (another repository,
    /// `HOST:PORT/REPO`) as `critical.identity.docker-reference`.
    pub fn sign_with_identity(&self, keys: &CosignKeys, reference: &str, identity: &str) {
        assert_eq!(
            self.major, 2,
            "--sign-container-identity is a deprecated no-op in cosign 3 (its bundle names no repository)"
        );
        self.sign_args(keys, reference, &["--sign-container-identity", identity]);
    }

    /// `cosign verify --key pub_key` of `reference`, offline (no transparency log); its run,
    /// whatever the exit status (stdout: the verified payloads as JSON).
    pub fn verify_run(&self, pub_key: &Path, reference: &str) -> Run {
        run_tool(&mut self.verify_command(pub_key, reference))
    }

    /// Whether `reference` has a signature that verifies with `pub_key` (`false` only when
    /// cosign says none does; any other failure panics).
    pub fn verify(&self, pub_key: &Path, reference: &str) -> bool {
        verdict(
            &mut self.verify_command(pub_key, reference),
            &COSIGN_REFUSALS,
        )
    }

    /// cosign 2: `verify --key K --insecure-ignore-tlog=true --allow-http-registry
    /// --allow-insecure-registry REF`; cosign 3 the same plus `--trusted-root EMPTY_ROOT`
    /// (no TUF lookup; `--offline=true` is deprecated and not needed).
    fn verify_command(&self, pub_key: &Path, reference: &str) -> Command {
        let home = pub_key.parent().unwrap().join("cosign-home");
        let mut c = tool_command(&self.bin, &home);
        c.arg("verify")
            .arg("--key")
            .arg(pub_key)
            .arg("--insecure-ignore-tlog=true")
            .args(COSIGN_REGISTRY_FLAGS);
        if let Some(root) = &self.trusted_root {
            c.arg("--trusted-root").arg(root);
        }
        c.arg(reference);
        c
    }
}

/// cosign 2 signs `reference` with `keys` (a `sha256-<hex>.sig` tag); asserts exit 0.
pub fn cosign2_sign(keys: &CosignKeys, reference: &str) {
    cosign2().sign(keys, reference);
}

/// cosign 2 signs `reference` claiming the repository `identity` instead of its own.
pub fn cosign2_sign_with_identity(keys: &CosignKeys, reference: &str, identity: &str) {
    cosign2().sign_with_identity(keys, reference, identity);
}

/// cosign 3 signs `reference` with `keys` (a bundle referrer; check [`cosign3`] first).
pub fn cosign3_sign(keys: &CosignKeys, reference: &str) {
    signers_env()
        .cosign3
        .as_ref()
        .expect("cosign 3 is not in env.sh: let cosign3(test) skip the test first")
        .sign(keys, reference);
}

/// Whether `tool` verifies a signature of `reference` with `pub_key` (see [`Cosign::verify`]).
pub fn cosign_verify(tool: &Cosign, pub_key: &Path, reference: &str) -> bool {
    tool.verify(pub_key, reference)
}

/// A notation configuration of one test: HOME=`dir`, so everything is in
/// `dir/.config/notation` (signingkeys.json, localkeys/, truststore/x509/ca/NAME/,
/// trustpolicy.json).
pub struct NotationHome {
    pub home: PathBuf,
    bin: PathBuf,
}

/// What notation's `verify` says when no signature verifies or none is there.
const NOTATION_REFUSALS: [&str; 2] = [
    "signature verification failed",
    "no signature is associated",
];

impl NotationHome {
    /// An empty notation configuration in `dir` (created).
    pub fn new(tool: &Notation, dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        NotationHome {
            home: dir.to_owned(),
            bin: tool.bin.clone(),
        }
    }

    /// `dir/.config/notation`
    pub fn config_dir(&self) -> PathBuf {
        self.home.join(".config/notation")
    }

    /// `notation ARGS`, cleared environment, HOME this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = tool_command(&self.bin, &self.home);
        c.args(args);
        c
    }

    /// `notation cert generate-test --default NAME`: an RSA key and a self-signed certificate
    /// (a day, codeSigning), the default signing key, and in trust store `ca:NAME`; the .crt.
    pub fn generate_test_cert(&self, name: &str) -> PathBuf {
        run_ok(&mut self.command(&["cert", "generate-test", "--default", name]));
        let crt = self
            .config_dir()
            .join("localkeys")
            .join(format!("{name}.crt"));
        assert!(crt.is_file(), "notation wrote no {}", crt.display());
        crt
    }

    /// Copies `cert` (PEM) into trust store `ca:name` (truststore/x509/ca/NAME/).
    pub fn add_to_trust_store(&self, name: &str, cert: &Path) {
        let d = self.config_dir().join("truststore/x509/ca").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::copy(cert, d.join(cert.file_name().unwrap())).unwrap();
    }

    /// Registers `key` + `cert` (PEM files; cert may be a chain, leaf first) as signing key
    /// `name` in signingkeys.json, the way `generate-test` does; `default`: make it the default.
    pub fn add_signing_key(&self, name: &str, key: &Path, cert: &Path, default: bool) {
        let f = self.config_dir().join("signingkeys.json");
        let mut doc: Value = fs::read(&f)
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or_else(|_| json!({"keys": []}));
        let keys = doc["keys"].as_array_mut().unwrap();
        assert!(
            keys.iter().all(|k| k["name"] != name),
            "signing key {name} exists already"
        );
        keys.push(json!({"name": name, "keyPath": path_str(key), "certPath": path_str(cert)}));
        if default {
            doc["default"] = json!(name);
        }
        fs::create_dir_all(self.config_dir()).unwrap();
        fs::write(&f, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }

    /// `notation sign --insecure-registry [extra] REF` with the default key; asserts exit 0.
    fn sign_args(&self, reference: &str, extra: &[&str]) {
        let mut c = self.command(&["sign", "--insecure-registry"]);
        run_ok(c.args(extra).arg(reference));
    }

    /// Signs `reference` (by digest) with the default key (a JWS referrer).
    pub fn sign(&self, reference: &str) {
        self.sign_args(reference, &[]);
    }

    /// Signs `reference` with the default key in the COSE envelope format
    /// (`--signature-format cose`: an `application/cose` referrer).
    pub fn sign_cose(&self, reference: &str) {
        self.sign_args(reference, &["--signature-format", "cose"]);
    }

    /// Signs `reference` with the signing key `key` (`--key`).
    pub fn sign_with_key(&self, reference: &str, key: &str) {
        self.sign_args(reference, &["--key", key]);
    }

    /// Signs `reference` with a signature that expires after `expiry` (`--expiry 2s`: any Go
    /// duration).
    pub fn sign_with_expiry(&self, reference: &str, expiry: &str) {
        self.sign_args(reference, &["--expiry", expiry]);
    }

    /// Writes trustpolicy.json: one strict policy for the repository of `reference`, with the
    /// named trust stores (`ca:NAME`) and trusted identities (`*`, or `x509.subject: C=..,
    /// ST=.., O=.., ...`: notation wants at least C, ST and O).
    pub fn write_trust_policy(
        &self,
        reference: &str,
        trust_stores: &[&str],
        trusted_identities: &[&str],
    ) {
        let policy = json!({
            "version": "1.0",
            "trustPolicies": [{
                "name": "imgcache-test",
                "registryScopes": [repository_of(reference)],
                "signatureVerification": {"level": "strict"},
                "trustStores": trust_stores,
                "trustedIdentities": trusted_identities,
            }]
        });
        fs::create_dir_all(self.config_dir()).unwrap();
        fs::write(
            self.config_dir().join("trustpolicy.json"),
            serde_json::to_vec_pretty(&policy).unwrap(),
        )
        .unwrap();
    }

    /// `notation verify --insecure-registry REF` under a trust policy of `trust_stores` and
    /// `trusted_identities` ([`Self::write_trust_policy`]); its run, whatever the exit status.
    pub fn verify_run(
        &self,
        reference: &str,
        trust_stores: &[&str],
        trusted_identities: &[&str],
    ) -> Run {
        self.write_trust_policy(reference, trust_stores, trusted_identities);
        run_tool(
            self.command(&["verify", "--insecure-registry"])
                .arg(reference),
        )
    }

    /// Whether a signature of `reference` verifies under that policy (`false` only when
    /// notation says none does; any other failure panics).
    pub fn verify(
        &self,
        reference: &str,
        trust_stores: &[&str],
        trusted_identities: &[&str],
    ) -> bool {
        self.write_trust_policy(reference, trust_stores, trusted_identities);
        verdict(
            self.command(&["verify", "--insecure-registry"])
                .arg(reference),
            &NOTATION_REFUSALS,
        )
    }

    /// A self-signed RSA certificate `CN=name` valid from a minute ago for `seconds` more, made
    /// with openssl and registered as the default signing key `name` and in trust store
    /// `ca:name` (see [`ShortLivedCert`] for what notation requires).
    pub fn short_lived_cert(&self, name: &str, seconds: u64) -> ShortLivedCert {
        let dir = self.home.join(format!("openssl-{name}"));
        fs::create_dir_all(dir.join("certs")).unwrap();
        fs::write(dir.join("index.txt"), "").unwrap();
        fs::write(dir.join("ca.cnf"), OPENSSL_CA_CNF).unwrap();
        let key = dir.join(format!("{name}.key"));
        let csr = dir.join(format!("{name}.csr"));
        let crt = dir.join(format!("{name}.crt"));
        let openssl = |args: &[&str]| {
            let mut c = tool_command(Path::new("openssl"), &self.home);
            run_ok(c.current_dir(&dir).args(args))
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path_str(&key),
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            path_str(&key),
            "-subj",
            &format!("/C=US/ST=WA/O=imgcache-test/CN={name}"),
            "-out",
            path_str(&csr),
        ]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let not_after = now + seconds;
        openssl(&[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-notext",
            "-keyfile",
            path_str(&key),
            "-in",
            path_str(&csr),
            "-out",
            path_str(&crt),
            "-startdate",
            &utc_time(now - 60),
            "-enddate",
            &utc_time(not_after),
        ]);
        self.add_signing_key(name, &key, &crt, true);
        self.add_to_trust_store(name, &crt);
        ShortLivedCert {
            crt,
            key,
            identity: format!("x509.subject: C=US, ST=WA, O=imgcache-test, CN={name}"),
            not_after: UNIX_EPOCH + Duration::from_secs(not_after),
        }
    }
}

/// A certificate of [`NotationHome::short_lived_cert`]. notation signs only with a certificate
/// valid at signing time ("certificate-chain is invalid, ... was invalid at signing time"), so an
/// expired one is made by signing at once and waiting ([`Self::wait_expired`]); `verify` then
/// fails ("verification time is after certificate ... validity period"; no timestamp). A
/// signing leaf must have keyUsage critical digitalSignature and, if present, extendedKeyUsage
/// codeSigning; a self-signed leaf in a `ca` trust store is accepted (as `generate-test` makes).
#[derive(Clone, Debug)]
pub struct ShortLivedCert {
    pub crt: PathBuf,
    pub key: PathBuf,
    /// The `trustedIdentities` entry of its subject.
    pub identity: String,
    /// Its notAfter (whole seconds).
    pub not_after: SystemTime,
}

impl ShortLivedCert {
    /// Sleeps until the certificate has expired (a second past notAfter).
    pub fn wait_expired(&self) {
        let until = self.not_after + Duration::from_secs(1);
        if let Ok(d) = until.duration_since(SystemTime::now()) {
            thread::sleep(d);
        }
    }
}

/// `openssl ca -selfsign` configuration: any subject, a random serial, the extensions notation
/// wants of a signing certificate.
const OPENSSL_CA_CNF: &str = "\
[ca]
default_ca = short
[short]
database = index.txt
new_certs_dir = certs
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
x509_extensions = leaf
[any]
countryName = optional
stateOrProvinceName = optional
organizationName = optional
commonName = supplied
[leaf]
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
";

/// Unix time `t` as ASN.1 UTCTime `YYMMDDHHMMSSZ` (what `openssl ca -startdate` takes).
fn utc_time(t: u64) -> String {
    let (days, secs) = (t / 86_400, t % 86_400);
    // civil date of a day count (Howard Hinnant's days_from_civil, inverted)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{:02}{m:02}{d:02}{:02}{:02}{:02}Z",
        y % 100,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `HOST:PORT/REPO` of `HOST:PORT/REPO@sha256:…` or `HOST:PORT/REPO:TAG`.
pub fn repository_of(reference: &str) -> &str {
    let r = reference.split_once('@').map_or(reference, |(r, _)| r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => &r[..i],
        _ => r,
    }
}

/// The tag cosign 2 keeps the signatures of `digest` (`sha256:<hex>`) under: `sha256-<hex>.sig`.
pub fn cosign_sig_tag(digest: &str) -> String {
    format!("{}.sig", referrers_tag(digest))
}

/// The referrers tag-schema tag listing the referrers of `digest`: `sha256-<hex>`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Copies cosign 2's `.sig` manifest of `from` to the `.sig` tag of `to` (two digests in the
/// repository `HOST:PORT/REPO`), bytes kept (`skopeo copy --preserve-digests`): a signature of
/// `from` that a client looking for `to`'s signatures finds.
pub fn copy_cosign2_signature(repository: &str, from: &str, to: &str) {
    copy_between_registries(
        &format!("{repository}:{}", cosign_sig_tag(from)),
        &format!("{repository}:{}", cosign_sig_tag(to)),
    );
}

/// One signature artifact in a registry, as the tools pushed it.
#[derive(Clone, Debug)]
pub struct RegistrySignature {
    /// The artifact manifest's digest.
    pub manifest: String,
    /// The digests of its layers (the signatures: payloads, bundles, envelopes), in order.
    pub layers: Vec<String>,
    /// The parsed manifest.
    pub doc: Value,
}

/// `skopeo inspect --raw` of `reference`, `None` when the registry has no such manifest.
fn raw_manifest(reference: &str) -> Option<Vec<u8>> {
    let r = output_of(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{reference}")),
    );
    match r.code {
        0 => Some(r.stdout.into_bytes()),
        _ if r.stderr.contains("manifest unknown") || r.stderr.contains("not found") => None,
        _ => panic!("skopeo inspect {reference}: exit {}\n{}", r.code, r.stderr),
    }
}

fn registry_signature(raw: &[u8]) -> RegistrySignature {
    let doc: Value = serde_json::from_slice(raw).unwrap();
    let layers = doc["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    RegistrySignature {
        manifest: digest_of(raw),
        layers,
        doc,
    }
}

/// The signature artifacts of `subject` (`sha256:…`) in `repository` (`HOST:PORT/REPO`): cosign
/// 2's `.sig` manifest if there is one, then each manifest the referrers tag-schema index
/// (`sha256-<hex>`, where cosign 3 and notation list theirs) names.
pub fn registry_signatures(repository: &str, subject: &str) -> Vec<RegistrySignature> {
    let mut out = Vec::new();
    if let Some(raw) = raw_manifest(&format!("{repository}:{}", cosign_sig_tag(subject))) {
        out.push(registry_signature(&raw));
    }
    if let Some(raw) = raw_manifest(&format!("{repository}:{}", referrers_tag(subject))) {
        let index: Value = serde_json::from_slice(&raw).unwrap();
        for m in index["manifests"].as_array().into_iter().flatten() {
            let digest = m["digest"].as_str().unwrap();
            let raw = raw_manifest(&format!("{repository}@{digest}")).unwrap_or_else(|| {
                panic!("{repository}@{digest}: listed as a referrer, not there")
            });
            out.push(registry_signature(&raw));
        }
    }
    out
}

/// The blobs of an imgcache store (`ROOT/blobs/sha256/<hex>`), as `sha256:<hex>`.
pub fn store_blobs(root: &Path) -> BTreeSet<String> {
    let Ok(dir) = fs::read_dir(root.join("blobs/sha256")) else {
        return BTreeSet::new();
    };
    dir.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

/// The blobs of an imgcache store that are signature material, whatever the tool: an artifact
/// manifest of cosign (`.sig`, simple-signing layers), of a sigstore bundle or of notation, a
/// simple-signing payload, a sigstore bundle, a JWS envelope.
pub fn signature_material_in_store(root: &Path) -> BTreeSet<String> {
    let is_signature = |doc: &Value| {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let layer_types: Vec<String> = doc["layers"]
            .as_array()
            .map(|ls| ls.iter().map(|l| text(&l["mediaType"])).collect())
            .unwrap_or_default();
        let artifact = text(&doc["artifactType"]);
        layer_types.iter().any(|t| {
            t.contains("simplesigning")
                || t.contains("sigstore.bundle")
                || t == "application/jose+json"
        }) || artifact.contains("notary.signature")
            || artifact.contains("sigstore.bundle")
            || doc["critical"]["type"] == "cosign container image signature"
            || doc.get("dsseEnvelope").is_some()
            || (doc.get("protected").is_some() && doc.get("signature").is_some())
    };
    store_blobs(root)
        .into_iter()
        .filter(|d| {
            let f = root.join("blobs/sha256").join(&d["sha256:".len()..]);
            fs::metadata(&f).is_ok_and(|m| m.len() < 1 << 20)
                && serde_json::from_slice::<Value>(&fs::read(&f).unwrap())
                    .is_ok_and(|doc| is_signature(&doc))
        })
        .collect()
}

/// A policy whose scope `scope` (`HOST:PORT/REPO`) holds `requirement`, every other image
/// accepted, written as the sandbox's `policy.json` (replacing the one written before); its path.
pub fn write_policy(sb: &Sandbox, scope: &str, requirement: Value) -> String {
    let doc = json!({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {scope: [requirement]}}
    });
    let path = sb.path("policy.json");
    fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path.display().to_string()
}

/// busybox:v1-oci copied into a registry of the test's own (stopped when the first is dropped):
/// the registry, its manifest, and `HOST:PORT/busybox@DIGEST`, what a test signs.
pub fn private_busybox() -> (PrivateRegistry, Manifest, String) {
    let reg = PrivateRegistry::start();
    let m = reg.copy_from_main("busybox:v1-oci");
    let pinned = format!("{}/busybox@{}", reg.addr, m.digest);
    (reg, m, pinned)
}
