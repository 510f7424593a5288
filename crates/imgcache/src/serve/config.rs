//! `serve --print-config ENGINE`: the files that point an engine at this server, printed for
//! the user to install (nothing is guessed or written).
//!
//! The traps each engine has are in the README's "Serve" section; the ones a file can avoid
//! are avoided here: containerd's and Docker's containerd store's `hosts.toml` keep the origin
//! as `server`, so a stopped `serve` falls back to it; the `registries.conf` mirror of a
//! plain-http server says `insecure = true`, which podman and CRI-O need.

use std::str::FromStr;

use serde::Serialize;

use crate::reference::DEFAULT_REGISTRY;
use crate::registry::http_is_loopback;

/// The engines `--print-config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineConfig {
    Containerd,
    Docker,
    Podman,
    Crio,
}

impl FromStr for EngineConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "containerd" => Ok(Self::Containerd),
            "docker" => Ok(Self::Docker),
            "podman" => Ok(Self::Podman),
            "crio" | "cri-o" => Ok(Self::Crio),
            _ => Err(format!(
                "{s:?}: --print-config takes containerd, docker, podman or crio"
            )),
        }
    }
}

/// One file to install: where it goes and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigFile {
    pub path: String,
    pub content: String,
}

/// The files that make `engine` pull `registries` through the server at `url`
/// (`http://HOST:PORT` or https).
pub fn print_config(engine: EngineConfig, url: &str, registries: &[String]) -> Vec<ConfigFile> {
    let address = url.split_once("://").map_or(url, |(_, a)| a);
    let plain = url.starts_with("http://");
    match engine {
        EngineConfig::Containerd => registries
            .iter()
            .map(|r| hosts_toml("/etc/containerd/certs.d", r, url))
            .collect(),
        EngineConfig::Docker => {
            // Classic dockerd mirrors docker.io only, and only through daemon.json.
            let mut daemon = serde_json::json!({ "registry-mirrors": [url] });
            if plain && !http_is_loopback(address) {
                daemon["insecure-registries"] = serde_json::json!([address]);
            }
            let mut files = vec![ConfigFile {
                path: "/etc/docker/daemon.json".into(),
                content: format!(
                    "{}\n",
                    serde_json::to_string_pretty(&daemon).unwrap_or_default()
                ),
            }];
            // Docker's containerd image store reads hosts.toml files, for every registry.
            files.extend(
                registries
                    .iter()
                    .map(|r| hosts_toml("/etc/docker/certs.d", r, url)),
            );
            files
        }
        EngineConfig::Podman | EngineConfig::Crio => {
            let mut content = format!(
                "# Pull through imgcache serve at {url}; the origin is used when it fails.\n"
            );
            for r in registries {
                let mirror = format!("{address}/{}", r.replace(':', "__"));
                content.push_str(&format!(
                    "\n[[registry]]\nprefix = \"{r}\"\nlocation = \"{r}\"\n"
                ));
                if http_is_loopback(r) {
                    content.push_str("insecure = true\n");
                }
                content.push_str(&format!("\n[[registry.mirror]]\nlocation = \"{mirror}\"\n"));
                if plain {
                    content.push_str("insecure = true\n");
                }
            }
            vec![ConfigFile {
                path: "/etc/containers/registries.conf.d/50-imgcache.conf".into(),
                content,
            }]
        }
    }
}

/// `DIR/<registry>/hosts.toml`: the server first, the origin as `server` (the fallback).
fn hosts_toml(dir: &str, registry: &str, url: &str) -> ConfigFile {
    let origin = if registry == DEFAULT_REGISTRY {
        "https://registry-1.docker.io".to_owned()
    } else if http_is_loopback(registry) {
        format!("http://{registry}")
    } else {
        format!("https://{registry}")
    };
    ConfigFile {
        path: format!("{dir}/{registry}/hosts.toml"),
        content: format!(
            "# {registry} through imgcache serve at {url}; the origin when it fails.\nserver = \"{origin}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_gets_one_hosts_toml_per_registry_with_the_origin_as_fallback() {
        let files = print_config(
            EngineConfig::Containerd,
            "http://127.0.0.1:5050",
            &["127.0.0.1:5000".into(), "docker.io".into()],
        );
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0].path,
            "/etc/containerd/certs.d/127.0.0.1:5000/hosts.toml"
        );
        assert!(
            files[0]
                .content
                .contains("server = \"http://127.0.0.1:5000\"")
        );
        assert!(
            files[0]
                .content
                .contains("[host.\"http://127.0.0.1:5050\"]")
        );
        assert!(
            files[1]
                .content
                .contains("server = \"https://registry-1.docker.io\"")
        );
    }

    #[test]
    fn podman_mirrors_by_path_prefix_with_the_port_spelled_after_two_underscores() {
        let files = print_config(
            EngineConfig::Podman,
            "http://10.0.0.2:5050",
            &["127.0.0.1:5000".into()],
        );
        let c = &files[0].content;
        assert!(c.contains("prefix = \"127.0.0.1:5000\""), "{c}");
        assert!(
            c.contains("location = \"10.0.0.2:5050/127.0.0.1__5000\""),
            "{c}"
        );
        assert_eq!(c.matches("insecure = true").count(), 2, "{c}");
    }

    #[test]
    fn docker_needs_insecure_registries_only_off_loopback() {
        let local = print_config(EngineConfig::Docker, "http://127.0.0.1:5050", &[]);
        assert!(!local[0].content.contains("insecure-registries"));
        let bridge = print_config(EngineConfig::Docker, "http://172.17.0.1:5050", &[]);
        assert!(bridge[0].content.contains("\"insecure-registries\""));
        assert!(bridge[0].content.contains("\"172.17.0.1:5050\""));
    }
}
