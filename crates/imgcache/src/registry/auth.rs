//! Authentication: `WWW-Authenticate` challenges, token responses, and finding credentials in
//! Docker/Podman auth files and credential helpers.
//!
//! Nothing here logs or formats a password, a token or an auth file's content.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use super::Credentials;

/// One challenge from a `WWW-Authenticate` header: a scheme (lowercased) and its parameters
/// (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value into its challenges (RFC 9110 §11.6.1): a value may hold
/// several (`Basic realm="a", Bearer realm="b",scope="c"`). Lenient: junk is skipped.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let s: Vec<char> = header.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let mut current: Option<Challenge> = None;
    let is_ws = |c: char| c == ' ' || c == '\t';
    while i < s.len() {
        while i < s.len() && (is_ws(s[i]) || s[i] == ',') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let start = i;
        while i < s.len() && !is_ws(s[i]) && s[i] != ',' && s[i] != '=' && s[i] != '"' {
            i += 1;
        }
        let token: String = s[start..i].iter().collect();
        if token.is_empty() {
            i += 1; // a stray '=' or '"'
            continue;
        }
        let mut j = i;
        while j < s.len() && is_ws(s[j]) {
            j += 1;
        }
        if j < s.len() && s[j] == '=' {
            i = j + 1;
            while i < s.len() && is_ws(s[i]) {
                i += 1;
            }
            let mut value = String::new();
            if i < s.len() && s[i] == '"' {
                i += 1;
                while i < s.len() && s[i] != '"' {
                    if s[i] == '\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    value.push(s[i]);
                    i += 1;
                }
                i += 1; // closing quote
            } else {
                while i < s.len() && !is_ws(s[i]) && s[i] != ',' {
                    value.push(s[i]);
                    i += 1;
                }
            }
            if let Some(c) = current.as_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            out.extend(current.take());
            current = Some(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    out.extend(current);
    out
}

/// A bearer token from a token server's JSON answer.
#[derive(Clone)]
pub(crate) struct Token {
    pub token: String,
    pub expires_at: Instant,
}

/// Tokens are used until shortly before they expire.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Lifetime when the answer has no `expires_in` (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// Parses `{"token": ..., "access_token": ..., "expires_in": N}`; `token` wins, as Docker does.
pub(crate) fn parse_token_response(body: &[u8], now: Instant) -> Option<Token> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let token = ["token", "access_token"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .find(|t| !t.is_empty())?
        .to_owned();
    let lifetime = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let lifetime = Duration::from_secs(lifetime.min(86_400 * 365));
    let expires_at = now + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN.min(lifetime / 2));
    Some(Token { token, expires_at })
}

/// Host names under which Docker Hub's credentials may be stored.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The server URL `docker login` stores Docker Hub credentials under.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// How well an auth-file key matches a registry and repository: `None` no match; a larger
/// number is a more specific (`host/namespace`) match.
fn key_match(key: &str, registry: &str, repository: &str) -> Option<usize> {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let path = path.trim_end_matches('/');
    let host = host.to_ascii_lowercase();
    let registry = registry.to_ascii_lowercase();
    let host_ok = if DOCKER_HUB_HOSTS.contains(&registry.as_str()) {
        DOCKER_HUB_HOSTS.contains(&host.as_str())
    } else {
        host == registry
    };
    if !host_ok {
        return None;
    }
    // `https://index.docker.io/v1/` and `host/v2/` are registry-wide.
    if path.is_empty() || path == "v1" || path == "v2" {
        return Some(0);
    }
    (repository == path || repository.starts_with(&format!("{path}/"))).then_some(path.len())
}

/// The value in `map` whose key matches best.
fn best_match<'a>(
    map: Option<&'a serde_json::Map<String, Value>>,
    registry: &str,
    repository: &str,
) -> Option<&'a Value> {
    map?.iter()
        .filter_map(|(k, v)| key_match(k, registry, repository).map(|score| (score, v)))
        .max_by_key(|(score, _)| *score)
        .map(|(_, v)| v)
}

/// Credentials from one `auths` entry: `auth` (base64 `user:password`), `username`/`password`,
/// or `identitytoken`.
fn entry_credentials(entry: &Value) -> Option<Credentials> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Some(Credentials::new(Credentials::IDENTITY_TOKEN_USER, token));
    }
    if let Some(auth) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())?;
        let (user, pass) = decoded.split_once(':')?;
        return (!user.is_empty()).then(|| Credentials::new(user, pass.trim_end_matches('\n')));
    }
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Some(Credentials::new(u, p)),
        _ => None,
    }
}

/// Where credentials were found, for a debug log line (never the credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialOrigin {
    File(PathBuf),
    Helper(String),
}

/// Finds credentials for `registry` (and `repository`) in the auth files, in order. In each
/// file: `credHelpers.<host>`, then an `auths` entry, then `credsStore`. `helper_path` is a
/// `PATH`-style search list for `docker-credential-*` (`None`: the process's `PATH`).
/// Unreadable or malformed files and failing helpers are skipped with a warning.
pub(crate) fn lookup_credentials(
    registry: &str,
    repository: &str,
    files: &[PathBuf],
    helper_path: Option<&OsStr>,
) -> Option<(Credentials, CredentialOrigin)> {
    for file in files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "cannot read auth file; skipping it");
                continue;
            }
        };
        let config: Value = match serde_json::from_slice(&text) {
            Ok(v) => v,
            Err(e) => {
                // The serde error names a line and column, never the content.
                tracing::warn!(path = %file.display(), error = %e, "auth file is not valid JSON; skipping it");
                continue;
            }
        };
        let helper_for_host = best_match(
            config.get("credHelpers").and_then(Value::as_object),
            registry,
            repository,
        )
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
        if let Some(helper) = helper_for_host
            && let Some(c) = run_helper(helper, registry, helper_path)
        {
            return Some((c, CredentialOrigin::Helper(helper.to_owned())));
        }
        if let Some(c) = best_match(
            config.get("auths").and_then(Value::as_object),
            registry,
            repository,
        )
        .and_then(entry_credentials)
        {
            return Some((c, CredentialOrigin::File(file.clone())));
        }
        if let Some(store) = config
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && let Some(c) = run_helper(store, registry, helper_path)
        {
            return Some((c, CredentialOrigin::Helper(store.to_owned())));
        }
    }
    None
}

/// How long a credential helper may run (it may wait on a keyring).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a helper's output that is read.
const HELPER_MAX_OUTPUT: u64 = 1024 * 1024;

/// Runs `docker-credential-<helper> get` with the server URL on stdin and parses
/// `{"Username": ..., "Secret": ...}`. `None` when not found or on any failure (logged without
/// the helper's output, which may hold a secret).
fn run_helper(helper: &str, registry: &str, helper_path: Option<&OsStr>) -> Option<Credentials> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        tracing::warn!(helper, "ignoring a credential helper with an unusual name");
        return None;
    }
    let program = format!("docker-credential-{helper}");
    let program_path = match helper_path {
        Some(p) => find_in_path(&program, p)?,
        None => PathBuf::from(&program),
    };
    let server = if DOCKER_HUB_HOSTS.contains(&registry) {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        registry.to_owned()
    };
    let mut child = match Command::new(&program_path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(program, error = %e, "cannot run credential helper");
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(server.as_bytes());
    }
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.take(HELPER_MAX_OUTPUT).read_to_end(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < HELPER_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    let Some(status) = status else {
        tracing::warn!(program, "credential helper timed out; killed it");
        return None;
    };
    if !status.success() {
        // "credentials not found in native keychain" is the usual reason: not worth a warning.
        tracing::debug!(program, %status, "credential helper found no credentials");
        return None;
    }
    let v: Value = serde_json::from_slice(&out).ok().or_else(|| {
        tracing::warn!(
            program,
            "credential helper printed something that is not JSON"
        );
        None
    })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if user.is_empty() || secret.is_empty() {
        return None;
    }
    Some(Credentials::new(user, secret))
}

fn find_in_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn parses_basic_and_bearer_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="test-registry""#),
            vec![c("basic", &[("realm", "test-registry")])]
        );
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            vec![c(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull"),
                ]
            )]
        );
        // Several challenges, odd spacing, unquoted values, escapes, commas inside quotes.
        assert_eq!(
            parse_challenges(
                r#"  basic REALM = "a \"b\", c" ,  BEARER realm=https://x/t , scope="repository:a/b:pull,push",error="invalid_token""#
            ),
            vec![
                c("basic", &[("realm", r#"a "b", c"#)]),
                c(
                    "bearer",
                    &[
                        ("realm", "https://x/t"),
                        ("scope", "repository:a/b:pull,push"),
                        ("error", "invalid_token"),
                    ]
                ),
            ]
        );
        assert_eq!(parse_challenges("Negotiate"), vec![c("negotiate", &[])]);
        assert_eq!(parse_challenges(""), vec![]);
        // Junk never panics.
        for junk in [
            "=",
            "\"",
            "a=\"",
            "Bearer realm=\"unterminated",
            ",,,",
            "Basic =",
        ] {
            let _ = parse_challenges(junk);
        }
    }

    #[test]
    fn parses_token_responses() {
        let now = Instant::now();
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.token, "abc");
        assert_eq!(t.expires_at, now + Duration::from_secs(290));
        let t = parse_token_response(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.token, "xyz");
        assert_eq!(t.expires_at, now + Duration::from_secs(50));
        let t = parse_token_response(br#"{"token":"","access_token":"xyz","expires_in":4}"#, now)
            .unwrap();
        assert_eq!(t.token, "xyz");
        assert_eq!(t.expires_at, now + Duration::from_secs(2));
        assert!(parse_token_response(br#"{"expires_in":300}"#, now).is_none());
        assert!(parse_token_response(b"not json", now).is_none());
    }

    #[test]
    fn matches_auth_keys_like_docker() {
        for key in [
            "127.0.0.1:5000",
            "https://127.0.0.1:5000",
            "http://127.0.0.1:5000/",
            "https://127.0.0.1:5000/v2/",
        ] {
            assert_eq!(
                key_match(key, "127.0.0.1:5000", "busybox"),
                Some(0),
                "{key}"
            );
        }
        assert_eq!(
            key_match("127.0.0.1:5001", "127.0.0.1:5000", "busybox"),
            None
        );
        assert_eq!(key_match("127.0.0.1", "127.0.0.1:5000", "busybox"), None);
        for key in [
            "https://index.docker.io/v1/",
            "docker.io",
            "registry-1.docker.io",
        ] {
            assert_eq!(
                key_match(key, "docker.io", "library/busybox"),
                Some(0),
                "{key}"
            );
        }
        assert_eq!(key_match("quay.io/org", "quay.io", "org/app"), Some(3));
        assert_eq!(
            key_match("quay.io/org", "quay.io", "organization/app"),
            None
        );
        assert_eq!(key_match("quay.io/org/app", "quay.io", "org/app"), Some(7));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn finds_credentials_in_auth_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = OsStr::new("");
        let docker = write(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{}"}},
                    "registry.example:5000": {{"auth": "{}"}},
                    "quay.io": {{"username": "quser", "password": "qpass"}},
                    "quay.io/team": {{"username": "tuser", "password": "tpass"}},
                    "ghcr.io": {{"identitytoken": "refresh-me"}},
                    "empty.example": {{}}
                }}}}"#,
                b64("hubuser:hub:pass"),
                b64("reguser:regpass")
            ),
        );
        let podman = write(
            dir.path(),
            "auth.json",
            &format!(
                r#"{{"auths": {{"empty.example": {{"auth": "{}"}}, "registry.example:5000": {{"auth": "{}"}}}}}}"#,
                b64("puser:ppass"),
                b64("other:other")
            ),
        );
        let broken = write(dir.path(), "broken.json", "{not json");
        let missing = dir.path().join("missing.json");
        let files = [missing, broken, docker.clone(), podman.clone()];
        let get = |reg: &str, repo: &str| {
            lookup_credentials(reg, repo, &files, Some(empty))
                .map(|(c, o)| (c.username, c.password, o))
        };
        let file = |p: &PathBuf| CredentialOrigin::File(p.clone());
        assert_eq!(
            get("docker.io", "library/busybox"),
            Some(("hubuser".into(), "hub:pass".into(), file(&docker)))
        );
        assert_eq!(
            get("registry.example:5000", "x"),
            Some(("reguser".into(), "regpass".into(), file(&docker)))
        );
        assert_eq!(
            get("quay.io", "other/app"),
            Some(("quser".into(), "qpass".into(), file(&docker)))
        );
        assert_eq!(
            get("quay.io", "team/app"),
            Some(("tuser".into(), "tpass".into(), file(&docker)))
        );
        assert_eq!(
            get("ghcr.io", "a/b"),
            Some(("<token>".into(), "refresh-me".into(), file(&docker)))
        );
        // An empty entry in the first file does not hide the second file's.
        assert_eq!(
            get("empty.example", "a"),
            Some(("puser".into(), "ppass".into(), file(&podman)))
        );
        assert_eq!(get("registry.example", "x"), None);
        assert_eq!(get("nowhere.example", "x"), None);
    }

    #[cfg(unix)]
    #[test]
    fn runs_credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // Answers for two servers, records what it was asked, fails for anything else.
        let script = format!(
            r#"#!/bin/sh
[ "$1" = get ] || exit 2
read -r server
echo "$server" >> "{log}"
case "$server" in
  helped.example:5000) echo '{{"ServerURL":"helped.example:5000","Username":"helperuser","Secret":"helpersecret"}}' ;;
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"<token>","Secret":"idtoken"}}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#,
            log = dir.path().join("asked.log").display()
        );
        let helper = bin.join("docker-credential-test");
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = write(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"credHelpers": {{"helped.example:5000": "test", "missing.example": "nonexistent"}},
                    "credsStore": "test",
                    "auths": {{"helped.example:5000": {{"auth": "{}"}}, "fileonly.example": {{"auth": "{}"}}}}}}"#,
                b64("fileuser:filepass"),
                b64("fuser:fpass")
            ),
        );
        let files = [config.clone()];
        let path = bin.as_os_str();
        let get = |reg: &str| {
            lookup_credentials(reg, "repo", &files, Some(path))
                .map(|(c, o)| (c.username, c.password, o))
        };
        let helper_origin = CredentialOrigin::Helper("test".into());
        // credHelpers wins over auths.
        assert_eq!(
            get("helped.example:5000"),
            Some((
                "helperuser".into(),
                "helpersecret".into(),
                helper_origin.clone()
            ))
        );
        // No helper entry: the auths entry.
        assert_eq!(
            get("fileonly.example"),
            Some((
                "fuser".into(),
                "fpass".into(),
                CredentialOrigin::File(config.clone())
            ))
        );
        // credsStore for the rest; Docker Hub is asked for by its v1 URL; identity tokens.
        assert_eq!(
            get("docker.io"),
            Some(("<token>".into(), "idtoken".into(), helper_origin))
        );
        // The helper has none, and a helper that does not exist is skipped.
        assert_eq!(get("unknown.example"), None);
        assert_eq!(get("missing.example"), None);
        let asked = std::fs::read_to_string(dir.path().join("asked.log")).unwrap();
        assert_eq!(
            asked.lines().collect::<Vec<_>>(),
            [
                "helped.example:5000",
                "https://index.docker.io/v1/",
                "unknown.example",
                "missing.example"
            ]
        );
    }
}
