//! A registry with Docker's token auth (what Docker Hub, GHCR and Harbor speak): a Debian
//! docker-registry in `start-registry.sh`'s token mode, which checks every token's signature,
//! and `token-server.py` as its realm. Both stopped by their PIDs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::*;

/// `token-server.py`'s user and password (start-registry.sh's defaults).
pub const TOKEN_CREDS: &str = "testuser:testpass";

pub struct TokenRegistry {
    pub registry: PrivateRegistry,
    server: Child,
}

impl TokenRegistry {
    pub fn start() -> Self {
        let port = free_port();
        let realm = format!("http://127.0.0.1:{port}/token");
        let registry = PrivateRegistry::start_mode("token", &[("TOKEN_REALM", realm.as_str())]);
        let mut server = Command::new("python3")
            .arg(testenv_script("token-server.py"))
            .arg(port.to_string())
            .arg(registry.ctl("token"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn token-server.py");
        let mut first = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        if first.trim() != format!("listening on {port}") {
            server.kill().ok();
            server.wait().ok();
            panic!("token-server.py printed {first:?}");
        }
        Self { registry, server }
    }

    /// `REGISTRY/NAME`.
    pub fn reference(&self, name: &str) -> String {
        self.registry.reference(name)
    }

    /// The token requests so far, one JSON object each (`scopes`, `account`, `user`,
    /// `granted`, `status`, `agent`).
    pub fn token_requests(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.registry.ctl("token/token.log")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Copies `from` (a reference of the plain test registry) here as `name`, with skopeo
    /// and the token server's credentials.
    pub fn seed(&self, from: &str, name: &str) {
        output_of(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            TOKEN_CREDS,
            &format!("docker://{from}"),
            &format!("docker://{}", self.reference(name)),
        ]))
        .ok(&format!("skopeo copy {from} to the token registry"));
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.server.kill().ok();
        self.server.wait().ok();
    }
}
