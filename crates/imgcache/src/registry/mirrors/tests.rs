//! The mirror configuration's rules, each on a small file or text.

use super::*;

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

fn conf(text: &str) -> Mirrors {
    Mirrors::from_registries_conf_str(text, Path::new("/etc/containers/registries.conf")).unwrap()
}

/// `registry/repository` of each source, in order.
fn tried(mirrors: &Mirrors, reference_text: &str) -> Vec<String> {
    let sources = mirrors.sources(&reference(reference_text)).unwrap();
    sources
        .iter()
        .map(|s| format!("{}/{}", s.registry, s.repository))
        .collect()
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn error_text(result: Result<Mirrors, Error>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn nothing_configured_is_the_origin_alone() {
    let mirrors = Mirrors::load(&MirrorSettings::default()).unwrap();
    assert!(mirrors.is_empty());
    let sources = mirrors.sources(&reference("busybox")).unwrap();
    assert_eq!(
        sources,
        [Source {
            registry: "docker.io".into(),
            repository: "library/busybox".into(),
            role: Role::Origin,
            ns: None,
            configured_in: None,
        }]
    );
    assert!(mirrors.host_settings().is_empty());
    // Only search settings: still nothing that changes a pull.
    assert!(conf("unqualified-search-registries = [\"docker.io\"]").is_empty());
}

#[test]
fn longest_prefix_wins() {
    let mirrors = conf(
        r#"
        [[registry]]
        prefix = "docker.io"
        location = "docker.io"
        [[registry.mirror]]
        location = "hub-mirror.example"

        [[registry]]
        prefix = "docker.io/library"
        location = "docker.io/library"
        [[registry.mirror]]
        location = "library-mirror.example/lib"
        "#,
    );
    assert_eq!(
        tried(&mirrors, "busybox"),
        [
            "library-mirror.example/lib/busybox",
            "docker.io/library/busybox"
        ]
    );
    assert_eq!(
        tried(&mirrors, "grafana/grafana"),
        [
            "hub-mirror.example/grafana/grafana",
            "docker.io/grafana/grafana"
        ]
    );
    assert_eq!(tried(&mirrors, "quay.io/x/y"), ["quay.io/x/y"]);
}

#[test]
fn prefixes_match_whole_path_components() {
    let mirrors = conf(
        r#"
        [[registry]]
        prefix = "docker.io/lib"
        location = "wrong.example"
        [[registry]]
        location = "localhost"
        blocked = true
        [[registry]]
        location = "quay.io/org/"
        [[registry.mirror]]
        location = "quay-mirror.example/org"
        "#,
    );
    assert_eq!(tried(&mirrors, "busybox"), ["docker.io/library/busybox"]);
    assert_eq!(tried(&mirrors, "docker.io/lib/x"), ["wrong.example/x"]);
    // `localhost` is not `localhost:5000`.
    assert_eq!(tried(&mirrors, "localhost:5000/x"), ["localhost:5000/x"]);
    assert!(mirrors.sources(&reference("localhost/x")).is_err());
    // The trailing `/` is not part of the prefix; a whole repository matches too.
    assert_eq!(
        tried(&mirrors, "quay.io/org/app:1"),
        ["quay-mirror.example/org/app", "quay.io/org/app"]
    );
    assert_eq!(
        tried(&mirrors, "quay.io/organization/app"),
        ["quay.io/organization/app"]
    );
}

#[test]
fn wildcard_prefix_matches_subdomains_only() {
    let mirrors = conf(
        r#"
        [[registry]]
        prefix = "*.example.com"
        insecure = true
        [[registry.mirror]]
        location = "cache.internal/example"
        "#,
    );
    assert_eq!(
        tried(&mirrors, "a.b.example.com:5000/team/app"),
        [
            "cache.internal/example/team/app",
            "a.b.example.com:5000/team/app"
        ]
    );
    assert_eq!(tried(&mirrors, "example.com/app"), ["example.com/app"]);
    assert_eq!(
        tried(&mirrors, "notexample.com/app"),
        ["notexample.com/app"]
    );
    assert_eq!(
        tried(&mirrors, "quay.io/example.com/app"),
        ["quay.io/example.com/app"]
    );
    // Its `insecure` is known only for a given reference.
    assert!(!mirrors.host_settings().contains_key("a.example.com"));
    let settings = mirrors.host_settings_for(&reference("a.example.com/app"));
    assert_eq!(settings["a.example.com"], insecure());
    let bad = Mirrors::from_registries_conf_str(
        "[[registry]]\nprefix = \"*.example.com/foo\"\n",
        Path::new("w.conf"),
    );
    assert!(error_text(bad).contains("*.domain"));
}

#[test]
fn locations_rewrite_origin_and_mirrors() {
    let mirrors = conf(
        r#"
        [[registry]]
        prefix = "docker.io"
        location = "hub.corp.example/proxy"
        [[registry.mirror]]
        location = "mirror.site:5000/dockerhub"
        "#,
    );
    let sources = mirrors.sources(&reference("busybox")).unwrap();
    let file = Some(PathBuf::from("/etc/containers/registries.conf"));
    assert_eq!(
        sources,
        [
            Source {
                registry: "mirror.site:5000".into(),
                repository: "dockerhub/library/busybox".into(),
                role: Role::Mirror,
                ns: None,
                configured_in: file.clone(),
            },
            Source {
                registry: "hub.corp.example".into(),
                repository: "proxy/library/busybox".into(),
                role: Role::Origin,
                ns: None,
                configured_in: file,
            },
        ]
    );
    // Onto Docker Hub: its library/ normalization applies.
    let onto_hub = conf("[[registry]]\nprefix = \"corp.example/hub\"\nlocation = \"docker.io\"");
    assert_eq!(
        tried(&onto_hub, "corp.example/hub/busybox"),
        ["docker.io/library/busybox"]
    );
    // A location without a registry host is refused when used, naming file and prefix.
    let hostless = conf("[[registry]]\nprefix = \"quay.io/a/b\"\nlocation = \"mirror.example\"");
    let e = hostless
        .sources(&reference("quay.io/a/b"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("registries.conf") && e.contains("quay.io/a/b"),
        "{e}"
    );
}

#[test]
fn digest_only_and_tag_only_mirrors() {
    let mirrors = conf(
        r#"
        [[registry]]
        location = "quay.io"
        [[registry.mirror]]
        location = "digests.example"
        pull-from-mirror = "digest-only"
        [[registry.mirror]]
        location = "tags.example"
        pull-from-mirror = "tag-only"
        [[registry.mirror]]
        location = "all.example"
        pull-from-mirror = "all"

        [[registry]]
        location = "ghcr.io"
        mirror-by-digest-only = true
        [[registry.mirror]]
        location = "old-style.example"
        "#,
    );
    assert_eq!(
        tried(&mirrors, "quay.io/a/b:1"),
        ["tags.example/a/b", "all.example/a/b", "quay.io/a/b"]
    );
    // A tag and a digest: the digest is what is pulled.
    assert_eq!(
        tried(&mirrors, &format!("quay.io/a/b:1@{DIGEST}")),
        ["digests.example/a/b", "all.example/a/b", "quay.io/a/b"]
    );
    assert_eq!(tried(&mirrors, "ghcr.io/a/b"), ["ghcr.io/a/b"]);
    assert_eq!(
        tried(&mirrors, &format!("ghcr.io/a/b@{DIGEST}")),
        ["old-style.example/a/b", "ghcr.io/a/b"]
    );
}

#[test]
fn invalid_registry_entries_name_the_file() {
    for (text, expected) in [
        (
            "[[registry]]\nlocation = \"q.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"tag-only\"",
            "cannot both be set",
        ),
        (
            "[[registry]]\nlocation = \"q.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"sometimes\"",
            "sometimes",
        ),
        (
            "[[registry]]\nlocation = \"https://q.io\"",
            "without http://",
        ),
        (
            "[[registry]]\ninsecure = true",
            "neither prefix nor location",
        ),
        ("[[registry]]\nprefix = \"q.io\"", "location is required"),
        (
            "[[registry]]\nlocation = \"q.io\"\n[[registry.mirror]]\ninsecure = true",
            "no location",
        ),
        (
            "[[registry]]\nlocation = \"q.io\"\ninsecure = \"yes\"",
            "not valid TOML",
        ),
    ] {
        let e = error_text(Mirrors::from_registries_conf_str(
            text,
            Path::new("/x/bad.conf"),
        ));
        assert!(
            e.contains("/x/bad.conf") && e.contains(expected),
            "{text}: {e}"
        );
    }
}

#[test]
fn blocked_is_an_error_naming_reference_prefix_and_file() {
    let mirrors = conf(
        "[[registry]]\nprefix = \"docker.io/evil\"\nlocation = \"docker.io/evil\"\nblocked = true",
    );
    let e = mirrors
        .sources(&reference("evil/app:1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("docker.io/evil/app:1"), "{e}");
    assert!(e.contains("\"docker.io/evil\""), "{e}");
    assert!(e.contains("/etc/containers/registries.conf"), "{e}");
    assert!(mirrors.sources(&reference("busybox")).is_ok());
}

#[test]
fn insecure_registries_and_mirrors_get_host_settings() {
    let mirrors = conf(
        r#"
        [[registry]]
        prefix = "docker.io"
        location = "proxy.corp:8080/hub"
        insecure = true
        [[registry.mirror]]
        location = "10.0.0.5:5000/hub"
        insecure = true
        [[registry.mirror]]
        location = "secure.example/hub"
        "#,
    );
    let settings = mirrors.host_settings();
    assert_eq!(settings.len(), 2, "{settings:?}");
    assert_eq!(settings["proxy.corp:8080"], insecure());
    assert_eq!(settings["10.0.0.5:5000"], insecure());
}

#[test]
fn version_1_block_and_insecure_are_honoured() {
    let mirrors = conf(
        r#"
        [registries.search]
        registries = ["docker.io"]
        [registries.insecure]
        registries = ["http-only.example:5000"]
        [registries.block]
        registries = ["blocked.example"]
        "#,
    );
    assert!(mirrors.sources(&reference("blocked.example/a")).is_err());
    assert_eq!(
        mirrors.host_settings()["http-only.example:5000"],
        insecure()
    );
    let mixed = "[registries.block]\nregistries = [\"a.io\"]\n[[registry]]\nlocation = \"b.io\"";
    let e = error_text(Mirrors::from_registries_conf_str(
        mixed,
        Path::new("m.conf"),
    ));
    assert!(e.contains("mixes"), "{e}");
}

#[test]
fn drop_ins_apply_in_lexical_order_and_replace_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("registries.conf");
    let drop_ins = dir.path().join("registries.conf.d");
    write(
        &main,
        "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"main.example\"\n\
         [[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"quay-main.example\"",
    );
    write(
        &drop_ins.join("20-late.conf"),
        "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"late.example\"",
    );
    write(
        &drop_ins.join("10-early.conf"),
        "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"early.example\"",
    );
    write(&drop_ins.join("99-ignored.conf.bak"), "garbage [[");
    write(&drop_ins.join("sub.conf/x.conf"), "garbage [[");
    let settings = MirrorSettings {
        registries_conf: vec![main.clone(), drop_ins.clone(), dir.path().join("missing.d")],
        hosts_dir: None,
    };
    let mirrors = Mirrors::load(&settings).unwrap();
    let sources = mirrors.sources(&reference("busybox")).unwrap();
    assert_eq!(sources[0].registry, "late.example");
    assert_eq!(
        sources[0].configured_in,
        Some(drop_ins.join("20-late.conf"))
    );
    assert_eq!(sources.len(), 2);
    // Other prefixes of the main file stay.
    assert_eq!(tried(&mirrors, "quay.io/a/b")[0], "quay-main.example/a/b");
    // Drop-ins must use the version 2 format.
    write(
        &drop_ins.join("30-v1.conf"),
        "[registries.block]\nregistries = [\"x.io\"]",
    );
    let e = error_text(Mirrors::load(&settings));
    assert!(e.contains("30-v1.conf") && e.contains("version 2"), "{e}");
}

#[test]
fn registries_conf_list_follows_containers_image() {
    let home = tempfile::tempdir().unwrap();
    let home_text = home.path().as_os_str().to_owned();
    // The list for a process environment of `vars` plus HOME.
    let paths = |vars: &[(&str, &str)]| {
        registries_conf_paths(|name: &str| {
            if name == "HOME" {
                return Some(home_text.clone());
            }
            vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.into())
        })
    };
    let user_d = home.path().join(".config/containers/registries.conf.d");
    let system = PathBuf::from("/etc/containers/registries.conf");
    let system_d = PathBuf::from("/etc/containers/registries.conf.d");

    assert_eq!(
        paths(&[]),
        [system.clone(), system_d.clone(), user_d.clone()]
    );
    // The variable replaces the main file only; drop-ins still apply.
    let explicit = [("CONTAINERS_REGISTRIES_CONF", "/tmp/r.conf")];
    assert_eq!(
        paths(&explicit),
        [
            PathBuf::from("/tmp/r.conf"),
            system_d.clone(),
            user_d.clone()
        ]
    );
    let old = [("REGISTRIES_CONFIG_PATH", "/tmp/old.conf")];
    assert_eq!(paths(&old)[0], PathBuf::from("/tmp/old.conf"));
    // Set but empty: the default, and the older name is not consulted.
    let empty = [
        ("CONTAINERS_REGISTRIES_CONF", ""),
        ("REGISTRIES_CONFIG_PATH", "/tmp/old.conf"),
    ];
    assert_eq!(paths(&empty)[0], system);

    // A user registries.conf replaces the system file and the system drop-ins.
    let user = home.path().join(".config/containers/registries.conf");
    write(&user, "");
    assert_eq!(paths(&[]), [user, user_d.clone()]);
    assert_eq!(paths(&explicit)[0], PathBuf::from("/tmp/r.conf"));

    // No home: system files only.
    let no_home = |name: &str| (name == "PATH").then(|| OsString::from("/bin"));
    assert_eq!(registries_conf_paths(no_home), [system, system_d]);
}

/// A hosts directory with `files` (path under it, text).
fn hosts_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, Mirrors) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        write(&dir.path().join(path), text);
    }
    let settings = MirrorSettings {
        registries_conf: Vec::new(),
        hosts_dir: Some(dir.path().to_owned()),
    };
    let mirrors = Mirrors::load(&settings).unwrap();
    (dir, mirrors)
}

#[test]
fn hosts_toml_hosts_in_file_order_then_server() {
    let (dir, mirrors) = hosts_dir(&[(
        "docker.io/hosts.toml",
        r#"
        server = "https://registry-1.docker.io"

        [host."https://zz-first.example:5000"]
          capabilities = ["pull", "resolve"]
          [host."https://zz-first.example:5000".header]
            x-custom = "ignored"
        [host."https://aa-second.example"]
        [host."mm-third.example"]
          capabilities = ["pull", "resolve", "push"]
        "#,
    )]);
    let file = Some(dir.path().join("docker.io/hosts.toml"));
    let sources = mirrors.sources(&reference("busybox")).unwrap();
    let mirror = |registry: &str| Source {
        registry: registry.into(),
        repository: "library/busybox".into(),
        role: Role::Mirror,
        ns: Some("docker.io".into()),
        configured_in: file.clone(),
    };
    assert_eq!(
        sources,
        [
            mirror("zz-first.example:5000"),
            mirror("aa-second.example"),
            mirror("mm-third.example"),
            Source {
                registry: "docker.io".into(),
                repository: "library/busybox".into(),
                role: Role::Origin,
                ns: None,
                configured_in: file.clone(),
            },
        ]
    );
    assert!(!mirrors.is_empty());
    // Other registries: not configured by a docker.io hosts.toml.
    assert_eq!(tried(&mirrors, "quay.io/a/b"), ["quay.io/a/b"]);
}

#[test]
fn hosts_toml_capabilities() {
    let (_dir, mirrors) = hosts_dir(&[(
        "quay.io/hosts.toml",
        r#"
        [host."https://public-mirror.example"]
          capabilities = ["pull"]
        [host."https://push-only.example"]
          capabilities = ["push"]
        [host."https://private-mirror.example"]
          capabilities = ["pull", "resolve"]
        "#,
    )]);
    assert_eq!(
        tried(&mirrors, "quay.io/a/b:1"),
        ["private-mirror.example/a/b", "quay.io/a/b"]
    );
    assert_eq!(
        tried(&mirrors, &format!("quay.io/a/b@{DIGEST}")),
        [
            "public-mirror.example/a/b",
            "private-mirror.example/a/b",
            "quay.io/a/b"
        ]
    );
    // A server that may not resolve tags is no origin for a tag.
    let (_dir, pull_only) = hosts_dir(&[(
        "quay.io/hosts.toml",
        "server = \"https://only.example\"\ncapabilities = [\"pull\"]",
    )]);
    let e = pull_only
        .sources(&reference("quay.io/a/b:1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("quay.io/a/b:1") && e.contains("hosts.toml") && e.contains("resolve"),
        "{e}"
    );
    let by_digest = pull_only
        .sources(&reference(&format!("quay.io/a/b@{DIGEST}")))
        .unwrap();
    assert_eq!(by_digest[0].registry, "only.example");
    assert_eq!(by_digest[0].ns.as_deref(), Some("quay.io"));
    let unknown = Mirrors::from_hosts_toml_str(
        "quay.io",
        "[host.\"https://m.example\"]\ncapabilities = [\"fly\"]",
        Path::new("/d/quay.io/hosts.toml"),
    );
    assert!(error_text(unknown).contains("fly"));
}

#[test]
fn hosts_toml_server_replaces_the_origin() {
    let (_dir, mirrors) = hosts_dir(&[(
        "_default/hosts.toml",
        "server = \"https://registry.example.com\"",
    )]);
    let sources = mirrors.sources(&reference("ghcr.io/a/b")).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].registry, "registry.example.com");
    assert_eq!(sources[0].role, Role::Origin);
    // containerd sends ns to any host other than the registry, the server included.
    assert_eq!(sources[0].ns.as_deref(), Some("ghcr.io"));
    // The registry itself as a host: no ns, and tried once (as the origin).
    let (_dir, itself) = hosts_dir(&[(
        "docker.io/hosts.toml",
        "server = \"https://docker.io\"\n[host.\"https://registry-1.docker.io\"]\ncapabilities = [\"pull\", \"resolve\"]",
    )]);
    let sources = itself.sources(&reference("busybox")).unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(
        (sources[0].registry.as_str(), sources[0].ns.as_ref()),
        ("docker.io", None)
    );
}

#[test]
fn hosts_toml_certificates_and_schemes() {
    let (dir, mirrors) = hosts_dir(&[(
        "reg.example:5000/hosts.toml",
        r#"
        ca = "server-ca.pem"
        skip_verify = true

        [host."http://plain.example:5000"]
        [host."http://plain-with-ca.example:5000"]
          ca = ["/abs/ca-1.pem", "rel/ca-2.pem"]
        [host."https://client-one.example"]
          client = "both.pem"
        [host."https://client-list.example"]
          client = ["both-1.pem", "/abs/both-2.pem"]
        [host."https://client-pairs.example"]
          client = [["c.cert", "c.key"], ["/abs/combined.pem", ""]]
        "#,
    )]);
    let base = dir.path().join("reg.example:5000");
    let settings = mirrors.host_settings();
    let plain = &settings["plain.example:5000"];
    assert!(plain.force_http && !plain.allow_http);
    let with_ca = &settings["plain-with-ca.example:5000"];
    assert!(with_ca.allow_http && !with_ca.force_http);
    assert_eq!(
        with_ca.ca_certs,
        [PathBuf::from("/abs/ca-1.pem"), base.join("rel/ca-2.pem")]
    );
    assert_eq!(
        settings["client-one.example"].client_certs,
        [(base.join("both.pem"), base.join("both.pem"))]
    );
    assert_eq!(
        settings["client-list.example"].client_certs,
        [
            (base.join("both-1.pem"), base.join("both-1.pem")),
            ("/abs/both-2.pem".into(), "/abs/both-2.pem".into()),
        ]
    );
    assert_eq!(
        settings["client-pairs.example"].client_certs,
        [
            (base.join("c.cert"), base.join("c.key")),
            ("/abs/combined.pem".into(), "/abs/combined.pem".into()),
        ]
    );
    // Top-level settings are the server's: here the registry itself.
    let server = &settings["reg.example:5000"];
    assert!(server.skip_verify);
    assert_eq!(server.ca_certs, [base.join("server-ca.pem")]);
    let bad_pair = Mirrors::from_hosts_toml_str(
        "x.io",
        "[host.\"https://m.example\"]\nclient = [[\"a\", \"b\", \"c\"]]",
        Path::new("/d/x.io/hosts.toml"),
    );
    assert!(error_text(bad_pair).contains("pair"));
}

#[test]
fn hosts_under_a_path_are_left_out() {
    let (_dir, mirrors) = hosts_dir(&[(
        "docker.io/hosts.toml",
        r#"
        [host."https://mirror.example/v2/upstream"]
          capabilities = ["pull", "resolve"]
        [host."https://non-compliant.example"]
          override_path = true
        [host."ftp://odd.example"]
        [host."https://with-v2.example/v2"]
        "#,
    )]);
    assert_eq!(
        tried(&mirrors, "busybox"),
        [
            "with-v2.example/library/busybox",
            "docker.io/library/busybox"
        ]
    );
}

#[test]
fn hosts_directory_lookup_order() {
    let (_dir, mirrors) = hosts_dir(&[
        (
            "_default/hosts.toml",
            "[host.\"https://default-mirror.example\"]",
        ),
        (
            "reg.example_5000_/hosts.toml",
            "[host.\"https://underscored.example\"]",
        ),
        (
            "reg.example:5000/hosts.toml",
            "[host.\"https://coloned.example\"]",
        ),
        (
            "other.example:5000/hosts.toml",
            "[host.\"https://other-mirror.example\"]",
        ),
        // A directory without hosts.toml (certificates only) shadows _default.
        ("certs-only.example/ca.crt", "not read here"),
    ]);
    assert_eq!(
        tried(&mirrors, "reg.example:5000/a")[0],
        "underscored.example/a"
    );
    assert_eq!(
        tried(&mirrors, "other.example:5000/a")[0],
        "other-mirror.example/a"
    );
    assert_eq!(
        tried(&mirrors, "quay.io/a/b"),
        ["default-mirror.example/a/b", "quay.io/a/b"]
    );
    assert_eq!(
        tried(&mirrors, "busybox")[0],
        "default-mirror.example/library/busybox"
    );
    assert_eq!(
        tried(&mirrors, "certs-only.example/a"),
        ["certs-only.example/a"]
    );
}

#[test]
fn hosts_toml_takes_precedence_but_blocked_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("registries.conf");
    write(
        &conf_path,
        r#"
        [[registry]]
        location = "docker.io"
        [[registry.mirror]]
        location = "conf-mirror.example"
        [[registry]]
        location = "quay.io"
        [[registry.mirror]]
        location = "quay-conf-mirror.example"
        [[registry]]
        location = "ghcr.io"
        blocked = true
        "#,
    );
    let certs = dir.path().join("certs.d");
    write(
        &certs.join("docker.io/hosts.toml"),
        "[host.\"https://toml-mirror.example\"]",
    );
    write(
        &certs.join("ghcr.io/hosts.toml"),
        "[host.\"https://ghcr-mirror.example\"]",
    );
    let mirrors = Mirrors::load(&MirrorSettings {
        registries_conf: vec![conf_path],
        hosts_dir: Some(certs),
    })
    .unwrap();
    assert_eq!(
        tried(&mirrors, "busybox"),
        [
            "toml-mirror.example/library/busybox",
            "docker.io/library/busybox"
        ]
    );
    assert_eq!(
        tried(&mirrors, "quay.io/a/b")[0],
        "quay-conf-mirror.example/a/b"
    );
    assert!(mirrors.sources(&reference("ghcr.io/a/b")).is_err());
}

#[test]
fn default_hosts_toml_top_level_settings_apply_to_each_registry() {
    let (_dir, mirrors) = hosts_dir(&[("_default/hosts.toml", "skip_verify = true")]);
    assert!(mirrors.host_settings().is_empty());
    let settings = mirrors.host_settings_for(&reference("quay.io/a/b"));
    assert!(settings["quay.io"].skip_verify);
}

#[test]
fn unparsable_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("registries.conf");
    write(&conf_path, "[[registry]\nlocation = ");
    let e = error_text(Mirrors::load(&MirrorSettings {
        registries_conf: vec![conf_path.clone()],
        hosts_dir: None,
    }));
    assert!(
        e.contains(&conf_path.display().to_string()) && e.contains("TOML"),
        "{e}"
    );

    let certs = dir.path().join("certs.d");
    let hosts_path = certs.join("docker.io/hosts.toml");
    write(&hosts_path, "server = \n");
    let e = error_text(Mirrors::load(&MirrorSettings {
        registries_conf: Vec::new(),
        hosts_dir: Some(certs),
    }));
    assert!(
        e.contains(&hosts_path.display().to_string()) && e.contains("TOML"),
        "{e}"
    );
}

#[test]
fn files_over_one_mib_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registries.conf");
    let mut text = String::from("# padding\n");
    text.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize));
    write(&path, &text);
    let e = Mirrors::load(&MirrorSettings {
        registries_conf: vec![path.clone()],
        hosts_dir: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn mirrors_per_entry_are_capped() {
    let mut text = String::from("[[registry]]\nlocation = \"quay.io\"\n");
    for i in 0..40 {
        text.push_str(&format!(
            "[[registry.mirror]]\nlocation = \"m{i}.example\"\n"
        ));
    }
    let sources = conf(&text).sources(&reference("quay.io/a/b")).unwrap();
    assert_eq!(sources.len(), MAX_MIRRORS_PER_ENTRY + 1);
    assert_eq!(sources[MAX_MIRRORS_PER_ENTRY].registry, "quay.io");
}
