//! Pulling through mirrors, on a fleet of real registries on loopback: an origin, a site mirror
//! (distribution 2.8 in pull-through proxy mode, `start-registry.sh PORT DIR proxy`), a site
//! registry seeded under a path prefix (as `sync --to REG/prefix` leaves one), the fault proxy
//! as a mirror that lies or wants a password, and imgcache homes configured the ways users
//! configure them: a registries.conf (`CONTAINERS_REGISTRIES_CONF`) and a containerd hosts
//! directory (`--hosts-dir`).
//!
//! Who served what is read from each registry's access log: imgcache's requests carry its
//! User-Agent (`imgcache/<version>`), the pull-through mirror's requests to the origin carry
//! distribution's. Every home has a registries.conf of its own (empty when it uses a hosts
//! directory), so the machine's /etc/containers/registries.conf never applies; the system
//! drop-in directory still does (as in containers/image), and is checked to configure no
//! registry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::proxy::{Fault, Proxy, Rule};
use crate::support::*;

/// How one imgcache home finds its mirrors.
#[derive(Clone, Debug)]
enum Config {
    /// A registries.conf of its own.
    RegistriesConf(String),
    /// A hosts directory holding `<registry>/hosts.toml` (and an empty registries.conf).
    HostsToml { registry: String, text: String },
}

/// One imgcache home of the fleet.
struct Node {
    sb: Sandbox,
    conf: PathBuf,
    hosts_dir: Option<PathBuf>,
}

/// A successful `pull --json`: its document and what it warned about.
struct Pulled {
    doc: Value,
    stderr: String,
}

impl Pulled {
    fn served_by(&self) -> &str {
        self.doc["served_by"]
            .as_str()
            .unwrap_or_else(|| panic!("no served_by: {:#}\nstderr:\n{}", self.doc, self.stderr))
    }

    /// It is `img`, served by `by`, fetched over the network.
    fn assert_image(&self, img: &Image, by: &str, ctx: &str) {
        assert_eq!(
            self.served_by(),
            by,
            "{ctx}: {:#}\n{}",
            self.doc,
            self.stderr
        );
        assert_eq!(
            self.doc["manifest_digest"],
            img.manifest_digest.as_str(),
            "{ctx}"
        );
        assert_eq!(
            self.doc["distribution_digest"],
            img.manifest_digest.as_str(),
            "{ctx}"
        );
        assert_eq!(self.doc["image_id"], img.config_digest.as_str(), "{ctx}");
        assert_eq!(self.doc["from_cache"], false, "{ctx}");
        assert_eq!(self.doc["blobs_fetched"], 1 + img.layers.len(), "{ctx}");
        assert_eq!(self.doc["bytes_fetched"], img.blob_bytes(), "{ctx}");
    }

    /// No host failed: nothing was skipped on the way.
    fn assert_no_fallback(&self, ctx: &str) {
        assert!(
            !self.stderr.contains("trying the next host"),
            "{ctx}: a host was skipped:\n{}",
            self.stderr
        );
    }
}

impl Node {
    fn new(config: &Config) -> Self {
        let sb = Sandbox::new();
        let conf = sb.path("registries.conf");
        let mut hosts_dir = None;
        match config {
            Config::RegistriesConf(text) => fs::write(&conf, text).unwrap(),
            Config::HostsToml { registry, text } => {
                fs::write(&conf, "").unwrap();
                let dir = sb.path("certs.d");
                fs::create_dir_all(dir.join(registry)).unwrap();
                fs::write(dir.join(registry).join("hosts.toml"), text).unwrap();
                hosts_dir = Some(dir);
            }
        }
        Self {
            sb,
            conf,
            hosts_dir,
        }
    }

    /// `imgcache [--json] pull [--hosts-dir DIR] ARGS`, its registries.conf its own.
    fn run_pull(&self, json: bool, args: &[&str]) -> Run {
        let mut a = Vec::new();
        if json {
            a.push("--json");
        }
        a.push("pull");
        if let Some(d) = &self.hosts_dir {
            a.extend(["--hosts-dir", path_str(d)]);
        }
        a.extend_from_slice(args);
        self.sb
            .run_with_env(&[("CONTAINERS_REGISTRIES_CONF", &self.conf)], &a)
    }

    /// `pull --json ARGS`, which must succeed.
    fn pull(&self, args: &[&str]) -> Pulled {
        let r = self.run_pull(true, args).ok(&format!("pull {args:?}"));
        Pulled {
            doc: r.json(),
            stderr: r.stderr,
        }
    }
}

/// One line of a private registry's access log.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    /// After `?`, empty when there is none.
    query: String,
    status: u16,
    agent: String,
}

impl Hit {
    fn by_imgcache(&self) -> bool {
        self.agent.starts_with("imgcache/")
    }

    /// `GET /v2/<repo>/blobs/<digest>` answered 200: the digest.
    fn blob_get(&self, repo: &str) -> Option<&str> {
        let digest = self.path.strip_prefix(&format!("/v2/{repo}/blobs/"))?;
        (self.method == "GET" && self.status == 200).then_some(digest)
    }

    /// `GET /v2/<repo>/manifests/<x>` (any status): x.
    fn manifest_get(&self, repo: &str) -> Option<&str> {
        let x = self.path.strip_prefix(&format!("/v2/{repo}/manifests/"))?;
        (self.method == "GET").then_some(x)
    }
}

/// `127.0.0.1 - - [date] "GET /v2/x?q HTTP/1.1" 200 587 "referer" "agent"`.
fn parse_hit(line: &str) -> Hit {
    let fields: Vec<&str> = line.split('"').collect();
    let mut request = fields[1].split(' ');
    let method = request.next().unwrap().to_owned();
    let uri = request.next().unwrap();
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let status = fields[2]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Hit {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        status,
        agent: fields.get(5).copied().unwrap_or("").to_owned(),
    }
}

/// The access-log lines of a private registry since `mark`.
fn hits(mark: &LogMark) -> Vec<Hit> {
    mark.accesses().iter().map(|l| parse_hit(l)).collect()
}

/// Blob GETs answered 200 among `hits`, counted per digest.
fn blob_gets<'a>(hits: impl IntoIterator<Item = &'a Hit>, repo: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for h in hits {
        if let Some(d) = h.blob_get(repo) {
            *out.entry(d.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// Every blob a pull of `img` downloads (config and layers), once each.
fn once_each(img: &Image) -> BTreeMap<String, usize> {
    img.blob_sizes().into_keys().map(|d| (d, 1)).collect()
}

/// What a hosts.toml mirror sends: `ns=<registry>`, form-encoded as containerd sends it.
fn ns_query(registry: &str) -> String {
    format!("ns={}", registry.replace(':', "%3A"))
}

/// A registries.conf routing `prefix` to `location`, with `mirrors` (location, extra lines).
fn registries_conf(prefix: &str, location: &str, mirrors: &[(&str, &str)]) -> Config {
    let mut text = format!("[[registry]]\nprefix = \"{prefix}\"\nlocation = \"{location}\"\n");
    for (m, extra) in mirrors {
        text.push_str(&format!(
            "\n[[registry.mirror]]\nlocation = \"{m}\"\n{extra}\n"
        ));
    }
    Config::RegistriesConf(text)
}

/// The system drop-ins still apply with `CONTAINERS_REGISTRIES_CONF` set (as in
/// containers/image): the tests are hermetic only while none of them configures a registry.
fn assert_system_drop_ins_configure_no_registry() {
    let dir = Path::new("/etc/containers/registries.conf.d");
    for name in listing(dir) {
        let path = dir.join(&name);
        if !name.ends_with(".conf") || path.is_dir() {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("[[registry") || l.starts_with("[registries")
            }),
            "{} configures registries: these tests would not be hermetic",
            path.display()
        );
    }
}

/// Waits until the pull-through `mirror` has stored every blob of `img` in `repo` (its
/// repository links written: from then on it serves them from its storage), or fails.
fn wait_until_stored(mirror: &PrivateRegistry, repo: &str, img: &Image) {
    let layers = mirror.ctl(&format!(
        "../docker/registry/v2/repositories/{repo}/_layers/sha256"
    ));
    let missing = || -> Vec<String> {
        img.blob_sizes()
            .into_keys()
            .filter(|d| !layers.join(hex(d)).join("link").is_file())
            .collect()
    };
    for _ in 0..600 {
        if missing().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the mirror never stored {:?} (in {})",
        missing(),
        layers.display()
    );
}

/// `img` (pushed to the plain test registry) copied to `to` as `<to>/<path>:v1`.
fn copy_image(img: &Image, to: &str, path: &str) {
    copy_between_registries(&img.reference, &format!("{to}/{path}:v1"));
}

/// The linux/amd64 config [`push_image`] gives an image of `layers` in `repo`.
fn config_of(repo: &str, layers: &[Layer]) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"test.repo": repo}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids(layers)},
    })
}

/// The fleet: an origin, a pull-through site mirror in front of it, a site registry seeded
/// under `team/`, and three homes pulling through them. The first home makes the mirror fetch
/// every blob from the origin; the next homes cost the origin no blob at all; with the origin
/// down, fresh homes still pull, each from its mirror.
#[test]
fn fleet_pulls_through_a_site_mirror_and_survives_the_origin_going_down() {
    assert_system_drop_ins_configure_no_registry();
    let mut origin = PrivateRegistry::start();
    let img = fresh_image("fleet", &[300_000, 40_000]);
    let repo = img.repo.as_str();
    copy_image(&img, &origin.addr, repo);
    let remote = format!("http://{}", origin.addr);
    let mirror = PrivateRegistry::start_mode("proxy", &[("REMOTE_URL", &remote)]);
    let site = PrivateRegistry::start();
    copy_image(&img, &site.addr, &format!("team/{repo}"));
    let reference = origin.reference(&format!("{repo}:v1"));
    let (o, m) = (origin.addr.as_str(), mirror.addr.as_str());

    // Plain http on loopback needs no `insecure = true`: loopback registries are probed.
    let conf_node = registries_conf(o, o, &[(m, "")]);
    let hosts_node = Config::HostsToml {
        registry: o.to_owned(),
        text: format!(
            "server = \"http://{o}\"\n\n[host.\"http://{m}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    };
    let site_node = registries_conf(o, o, &[(&format!("{}/team", site.addr), "")]);
    let by_mirror = format!("{m}/{repo}");
    let by_site = format!("{}/team/{repo}", site.addr);

    // 1. The first home: the mirror fetches every blob from the origin. distribution 2.8
    // fetches a blob it lacks twice: once streamed to the client, once (in the background) to
    // store it; the test waits for it to be stored.
    let (origin_log, mirror_log) = (origin.mark(), mirror.mark());
    let a = Node::new(&conf_node).pull(&[&reference]);
    a.assert_image(&img, &by_mirror, "first home");
    a.assert_no_fallback("first home");
    wait_until_stored(&mirror, repo, &img);
    let at_origin = hits(&origin_log);
    assert!(
        at_origin.iter().all(|h| !h.by_imgcache()),
        "the home asked the origin itself: {at_origin:#?}"
    );
    let fetched = blob_gets(&at_origin, repo);
    assert!(
        fetched.keys().eq(once_each(&img).keys()) && fetched.values().all(|n| (1..=2).contains(n)),
        "the mirror's blob GETs at the origin: {fetched:?}, expected each of {:?} once or twice",
        img.blob_sizes().keys()
    );
    assert!(
        at_origin.iter().any(|h| h.manifest_get(repo).is_some()),
        "the mirror did not ask the origin for the manifest: {at_origin:#?}"
    );
    let at_mirror: Vec<Hit> = hits(&mirror_log)
        .into_iter()
        .filter(Hit::by_imgcache)
        .collect();
    assert_eq!(
        blob_gets(&at_mirror, repo),
        once_each(&img),
        "{at_mirror:#?}"
    );
    assert!(
        at_mirror.iter().all(|h| h.query.is_empty()),
        "a registries.conf mirror gets no ?ns=: {at_mirror:#?}"
    );

    // 2. The hosts.toml home: served by the mirror's copy, no blob asked of the origin, and
    // every request to the mirror says which registry it is for.
    let (origin_log, mirror_log) = (origin.mark(), mirror.mark());
    let b = Node::new(&hosts_node).pull(&[&reference]);
    b.assert_image(&img, &by_mirror, "hosts.toml home");
    b.assert_no_fallback("hosts.toml home");
    let at_origin = hits(&origin_log);
    assert_eq!(
        blob_gets(&at_origin, repo),
        BTreeMap::new(),
        "{at_origin:#?}"
    );
    assert!(at_origin.iter().all(|h| !h.by_imgcache()), "{at_origin:#?}");
    let at_mirror: Vec<Hit> = hits(&mirror_log)
        .into_iter()
        .filter(Hit::by_imgcache)
        .collect();
    assert_eq!(
        blob_gets(&at_mirror, repo),
        once_each(&img),
        "{at_mirror:#?}"
    );
    let ns = ns_query(o);
    assert!(
        at_mirror.iter().all(|h| h.query == ns),
        "every request to a hosts.toml mirror carries {ns}: {at_mirror:#?}"
    );
    assert!(
        at_mirror
            .iter()
            .any(|h| h.manifest_get(repo) == Some("v1") && h.status == 200),
        "{at_mirror:#?}"
    );

    // 3. The home whose mirror is the site registry, under a path prefix: the origin hears
    // nothing at all.
    let (origin_log, site_log) = (origin.mark(), site.mark());
    let c = Node::new(&site_node).pull(&[&reference]);
    c.assert_image(&img, &by_site, "site registry home");
    c.assert_no_fallback("site registry home");
    let at_origin = hits(&origin_log);
    assert!(at_origin.is_empty(), "{at_origin:#?}");
    let at_site = hits(&site_log);
    let prefixed = format!("team/{repo}");
    assert_eq!(
        blob_gets(&at_site, &prefixed),
        once_each(&img),
        "{at_site:#?}"
    );
    assert!(
        at_site
            .iter()
            .any(|h| h.manifest_get(&prefixed) == Some("v1") && h.status == 200),
        "{at_site:#?}"
    );

    // 4. The origin goes down: fresh homes still pull, each from its mirror (the pull-through
    // mirror answers the tag from what it cached).
    origin.stop();
    let mirror_log = mirror.mark();
    for (config, by) in [
        (&conf_node, &by_mirror),
        (&hosts_node, &by_mirror),
        (&site_node, &by_site),
    ] {
        let ctx = format!("origin down, {config:?}");
        let p = Node::new(config).pull(&[&reference]);
        p.assert_image(&img, by, &ctx);
        p.assert_no_fallback(&ctx);
    }
    let at_mirror = hits(&mirror_log);
    let mut twice = once_each(&img);
    twice.values_mut().for_each(|n| *n = 2);
    assert_eq!(blob_gets(&at_mirror, repo), twice, "{at_mirror:#?}");

    // The human output says who served it too.
    let r = Node::new(&conf_node)
        .run_pull(false, &[&reference])
        .ok("human pull, origin down");
    assert!(
        r.stdout.contains(&format!("served by    {by_mirror}")),
        "{}",
        r.stdout
    );
}

/// The mirror is down, the origin up: each home says which mirror failed and pulls from the
/// origin; the origin's log shows each home fetching every blob itself.
#[test]
fn fleet_falls_back_to_the_origin_when_the_mirror_is_down() {
    let origin = PrivateRegistry::start();
    let img = fresh_image("fleet-fallback", &[120_000, 30_000]);
    let repo = img.repo.as_str();
    copy_image(&img, &origin.addr, repo);
    let remote = format!("http://{}", origin.addr);
    let mut mirror = PrivateRegistry::start_mode("proxy", &[("REMOTE_URL", &remote)]);
    let reference = origin.reference(&format!("{repo}:v1"));
    let (o, m) = (origin.addr.clone(), mirror.addr.clone());
    mirror.stop();

    let configs = [
        registries_conf(&o, &o, &[(&m, "")]),
        Config::HostsToml {
            registry: o.clone(),
            text: format!(
                "server = \"http://{o}\"\n[host.\"http://{m}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        },
    ];
    for config in &configs {
        let ctx = format!("mirror down, {config:?}");
        let origin_log = origin.mark();
        let p = Node::new(config).pull(&[&reference]);
        p.assert_image(&img, &format!("{o}/{repo}"), &ctx);
        assert!(
            p.stderr
                .contains(&format!("{m}/{repo} failed, trying the next host")),
            "{ctx}: no warning naming the mirror:\n{}",
            p.stderr
        );
        let at_origin = hits(&origin_log);
        assert!(
            at_origin.iter().all(Hit::by_imgcache),
            "{ctx}: {at_origin:#?}"
        );
        assert_eq!(blob_gets(&at_origin, repo), once_each(&img), "{ctx}");
        // The hosts.toml server is the registry itself: no ?ns= for it.
        assert!(
            at_origin.iter().all(|h| h.query.is_empty()),
            "{ctx}: {at_origin:#?}"
        );
    }
}

/// A mirror answers a digest-pinned manifest with other bytes (the fault proxy replaces the
/// body, keeping the registry's headers): refused, the mismatch and the mirror named, and the
/// origin serves the pinned image.
#[test]
fn digest_pinned_pull_refuses_a_mirror_serving_other_bytes() {
    let img = fresh_image("pinned-lie", &[80_000]);
    let other = fresh_image("pinned-other", &[80_000]);
    let repo = img.repo.as_str();
    let manifest_path = format!("/v2/{repo}/manifests/{}", img.manifest_digest);
    let mirror = Proxy::with_rules(
        registry(),
        vec![Rule::always(
            &manifest_path,
            Fault::ReplaceBody(Arc::new(other.manifest.clone())),
        )],
    );
    let full = format!("{}/{repo}", registry());
    let m = format!("{}/{repo}", mirror.registry());
    let node = Node::new(&registries_conf(&full, &full, &[(&m, "")]));

    let log = RegistryLog::mark();
    let p = node.pull(&[&img.pinned()]);
    p.assert_image(&img, &full, "pinned");
    for needle in [
        format!("{m} failed, trying the next host"),
        format!("expected {}", img.manifest_digest),
        format!("got {}", other.manifest_digest),
    ] {
        assert!(
            p.stderr.contains(&needle),
            "no {needle:?} in:\n{}",
            p.stderr
        );
    }
    // The mirror was asked for the manifest, lied, and got nothing more.
    let seen = mirror.seen();
    let lied: Vec<_> = seen.iter().filter(|s| s.path == manifest_path).collect();
    assert_eq!(lied.len(), 1, "{seen:#?}");
    assert!(lied[0].fault.is_some(), "{seen:#?}");
    assert!(
        !seen.iter().any(|s| s.path.contains("/blobs/")),
        "{seen:#?}"
    );
    // The origin served every blob; nothing of the other image was kept.
    assert_eq!(log.blob_gets_per_digest(repo), once_each(&img));
    let files = node.sb.blob_files();
    assert_eq!(
        files,
        img.blobs(),
        "the cache holds exactly the pinned image"
    );
    assert!(!files.contains(&other.manifest_digest));
    node.sb.assert_fsck_clean(&[]);
}

/// `blocked = true` refuses the pull before any request, even where a hosts.toml configures
/// the registry; the message names the prefix and the file. A sibling repository the prefix
/// does not cover (whole path components only) pulls.
#[test]
fn blocked_prefix_refuses_the_pull_naming_the_prefix_and_the_file() {
    let img = fresh_image("blocked", &[20_000]);
    let sibling = push_image(&format!("{}-sibling", img.repo), &[layer(20_000)]);
    let full = format!("{}/{}", registry(), img.repo);
    let config = Config::RegistriesConf(format!(
        "[[registry]]\nprefix = \"{full}\"\nlocation = \"{full}\"\nblocked = true\n"
    ));
    let mut node = Node::new(&config);
    // A hosts.toml for the registry: a route, which does not lift the prohibition.
    let dir = node.sb.path("certs.d");
    fs::create_dir_all(dir.join(registry())).unwrap();
    fs::write(
        dir.join(registry()).join("hosts.toml"),
        format!("server = \"http://{}\"\n", registry()),
    )
    .unwrap();
    node.hosts_dir = Some(dir);

    let log = RegistryLog::mark();
    let r = node.run_pull(true, &[&img.reference]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let doc = r.json();
    assert_eq!(doc["ok"], false, "{doc:#}");
    let message = doc["error"]["message"].as_str().unwrap();
    let file = node.conf.display().to_string();
    for needle in [
        img.reference.as_str(),
        "blocked",
        &format!("\"{full}\""),
        &file,
    ] {
        assert!(message.contains(needle), "no {needle:?} in {message:?}");
        assert!(r.stderr.contains(needle), "no {needle:?} in:\n{}", r.stderr);
    }
    assert_eq!(log.access_lines(&img.repo), Vec::<String>::new());
    assert_eq!(node.sb.refs(), Vec::<String>::new());

    let p = node.pull(&[&sibling.reference]);
    p.assert_image(
        &sibling,
        &format!("{}/{}", registry(), sibling.repo),
        "sibling",
    );
}

/// `pull-from-mirror = "digest-only"`: a tag pull goes to the origin without asking the mirror
/// anything; a digest-pinned pull is served by the mirror.
#[test]
fn digest_only_mirror_is_skipped_for_tags_and_used_for_digests() {
    let img = fresh_image("digest-only", &[60_000, 10_000]);
    let repo = img.repo.as_str();
    let mirror = PrivateRegistry::start();
    copy_image(&img, &mirror.addr, repo);
    let full = format!("{}/{repo}", registry());
    let m = format!("{}/{repo}", mirror.addr);
    let config = registries_conf(&full, &full, &[(&m, "pull-from-mirror = \"digest-only\"")]);

    let (mirror_log, log) = (mirror.mark(), RegistryLog::mark());
    let p = Node::new(&config).pull(&[&img.reference]);
    p.assert_image(&img, &full, "tag");
    p.assert_no_fallback("tag");
    let at_mirror = hits(&mirror_log);
    assert!(
        at_mirror.is_empty(),
        "a tag pull asked the mirror: {at_mirror:#?}"
    );
    assert_eq!(log.blob_gets_per_digest(repo), once_each(&img));

    let (mirror_log, log) = (mirror.mark(), RegistryLog::mark());
    let p = Node::new(&config).pull(&[&img.pinned()]);
    p.assert_image(&img, &m, "digest");
    p.assert_no_fallback("digest");
    let at_mirror = hits(&mirror_log);
    assert_eq!(
        blob_gets(&at_mirror, repo),
        once_each(&img),
        "{at_mirror:#?}"
    );
    let pinned = img.manifest_digest.as_str();
    assert!(
        at_mirror
            .iter()
            .any(|h| h.manifest_get(repo) == Some(pinned)),
        "{at_mirror:#?}"
    );
    assert_eq!(log.blob_gets_per_digest(repo), BTreeMap::new());
}

/// An origin that wants a password, and a mirror in front of the same registry (the fault
/// proxy, forwarding faithfully, so it answers 401 with the registry's Basic challenge).
/// `--creds` is for the registry named: the mirror never gets an Authorization header, its 401
/// is skipped, and the origin serves the pull with the credentials.
#[test]
fn creds_are_never_sent_to_a_mirror() {
    let origin = PrivateRegistry::start_mode("htpasswd", &[]);
    let creds = "testuser:testpass"; // start-registry.sh's defaults for $REG_USER/$REG_PASS
    let repo = unique_name("creds-mirror");
    let layers = [layer(50_000)];
    let img = push_layout(
        &origin.addr,
        Some(creds),
        &repo,
        &config_of(&repo, &layers),
        &layers,
    );
    let mirror = Proxy::start(&origin.addr);
    let (o, m) = (origin.addr.as_str(), mirror.registry());
    let node = Node::new(&registries_conf(o, o, &[(&m, "")]));

    let origin_log = origin.mark();
    let p = node.pull(&["--creds", creds, &img.reference]);
    p.assert_image(&img, &format!("{o}/{repo}"), "with --creds");
    assert!(
        p.stderr
            .contains(&format!("{m}/{repo} failed, trying the next host"))
            && p.stderr.contains("wants credentials"),
        "{}",
        p.stderr
    );
    let seen = mirror.seen();
    assert!(
        seen.iter().any(|s| s.path.contains("/manifests/")),
        "the mirror was never asked: {seen:#?}"
    );
    assert!(
        seen.iter().all(|s| !s.authorization),
        "an Authorization header went to the mirror: {seen:#?}"
    );
    let at_origin = hits(&origin_log);
    assert_eq!(
        blob_gets(&at_origin, &repo),
        once_each(&img),
        "{at_origin:#?}"
    );
}

/// The other side of [`creds_are_never_sent_to_a_mirror`]: a mirror gets the credentials
/// stored for its own host (`~/.docker/config.json`), and serves the pull.
#[test]
fn a_mirror_gets_the_credentials_stored_for_its_own_host() {
    let origin = PrivateRegistry::start_mode("htpasswd", &[]);
    let creds = "testuser:testpass";
    let repo = unique_name("creds-stored");
    let layers = [layer(30_000)];
    let img = push_layout(
        &origin.addr,
        Some(creds),
        &repo,
        &config_of(&repo, &layers),
        &layers,
    );
    let mirror = Proxy::start(&origin.addr);
    let (o, m) = (origin.addr.as_str(), mirror.registry());
    let node = Node::new(&registries_conf(o, o, &[(&m, "")]));
    write_docker_config(&node.sb.home, &m, creds);

    let origin_log = origin.mark();
    let p = node.pull(&[&img.reference]);
    p.assert_image(&img, &format!("{m}/{repo}"), "stored mirror credentials");
    p.assert_no_fallback("stored mirror credentials");
    let seen = mirror.seen();
    assert!(
        seen.iter()
            .any(|s| s.authorization && s.path.contains("/blobs/")),
        "{seen:#?}"
    );
    // Every request reached the origin through the mirror.
    let at_origin = hits(&origin_log);
    assert!(!at_origin.is_empty());
    assert_eq!(at_origin.len(), seen.len(), "{at_origin:#?}\n{seen:#?}");
}

/// A hosts.toml host without `resolve` may not turn a tag into a digest: a tag pull goes to
/// the origin (the registry itself: no `server` line) without asking it; a digest-pinned pull
/// uses it, with `?ns=`.
#[test]
fn hosts_toml_host_without_resolve_serves_digest_pulls_only() {
    let img = fresh_image("no-resolve", &[40_000]);
    let repo = img.repo.as_str();
    let mirror = PrivateRegistry::start();
    copy_image(&img, &mirror.addr, repo);
    let config = Config::HostsToml {
        registry: registry().to_owned(),
        text: format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\"]\n",
            mirror.addr
        ),
    };

    let mirror_log = mirror.mark();
    let p = Node::new(&config).pull(&[&img.reference]);
    p.assert_image(&img, &format!("{}/{repo}", registry()), "tag");
    p.assert_no_fallback("tag");
    let at_mirror = hits(&mirror_log);
    assert!(at_mirror.is_empty(), "{at_mirror:#?}");

    let (mirror_log, log) = (mirror.mark(), RegistryLog::mark());
    let p = Node::new(&config).pull(&[&img.pinned()]);
    p.assert_image(&img, &format!("{}/{repo}", mirror.addr), "digest");
    p.assert_no_fallback("digest");
    let at_mirror = hits(&mirror_log);
    assert_eq!(
        blob_gets(&at_mirror, repo),
        once_each(&img),
        "{at_mirror:#?}"
    );
    let ns = ns_query(registry());
    assert!(
        at_mirror
            .iter()
            .filter(|h| h.path.starts_with(&format!("/v2/{repo}/")))
            .all(|h| h.query == ns),
        "{at_mirror:#?}"
    );
    assert_eq!(log.blob_gets_per_digest(repo), BTreeMap::new());
}

/// The TLS test registry (a private CA) pulled by `node`: without the CA it is a TLS failure.
fn assert_tls_registry_pulls_only_with(node: &Node, ctx: &str) {
    let tls = &env().vars["TEST_REGISTRY_TLS"];
    let reference = format!("{tls}/busybox:v1");
    let expected = Manifest::of(tls, "busybox:v1");
    let p = node.pull(&[&reference]);
    assert_eq!(p.served_by(), format!("{tls}/busybox"), "{ctx}");
    assert_eq!(p.doc["manifest_digest"], expected.digest.as_str(), "{ctx}");
    // The control: a home without that configuration does not trust the registry.
    let bare = Node::new(&Config::RegistriesConf(String::new()));
    let r = bare.run_pull(false, &[&reference]);
    assert_ne!(r.code, 0, "{ctx}: pulled without the configuration");
    assert!(r.stderr.contains("TLS failure"), "{ctx}: {}", r.stderr);
}

/// Regression: settings `_default/hosts.toml` gives at its top level (no `server`: they are
/// each registry's own) were never applied (`Mirrors::host_settings_for` was not used), so its
/// `ca` was not trusted for a registry without a directory of its own.
#[test]
fn default_hosts_toml_top_level_ca_is_trusted_for_the_registry() {
    let node = Node::new(&Config::HostsToml {
        registry: "_default".into(),
        text: format!("ca = \"{}\"\n", env().vars["TEST_REGISTRY_TLS_CA"]),
    });
    assert_tls_registry_pulls_only_with(&node, "_default/hosts.toml ca");
}

/// Regression: `insecure = true` on a wildcard `[[registry]]` (no location) was never
/// applied to the registries it matches. `*.0.0.1` matches `127.0.0.1` as containers/image
/// matches it: by the host's suffix.
#[test]
fn wildcard_registries_conf_insecure_applies_to_the_matching_registry() {
    let node = Node::new(&Config::RegistriesConf(
        "[[registry]]\nprefix = \"*.0.0.1\"\ninsecure = true\n".into(),
    ));
    assert_tls_registry_pulls_only_with(&node, "*.0.0.1 insecure");
}

/// Regression: `serve` pulled a registries.conf-blocked reference through to the origin (it
/// never asked the mirror configuration). Now it answers 404 and the origin sees no request.
#[test]
fn serve_does_not_pull_through_a_blocked_registry() {
    let img = fresh_image("serve-blocked", &[20_000]);
    let full = format!("{}/{}", registry(), img.repo);
    let node = Node::new(&Config::RegistriesConf(format!(
        "[[registry]]\nprefix = \"{full}\"\nlocation = \"{full}\"\nblocked = true\n"
    )));
    let conf = path_str(&node.conf).to_owned();
    let serving = Serving::start_with_env(&node.sb, &[], &[("CONTAINERS_REGISTRIES_CONF", &conf)]);
    let log = RegistryLog::mark();
    let tag = img.reference.rsplit_once(':').unwrap().1;
    let url = format!(
        "{}/v2/{}/manifests/{tag}?ns={}",
        serving.url,
        img.repo,
        registry()
    );
    let r = output_of(Command::new("curl").args([
        "-s",
        "-w",
        "\n%{http_code}",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        &url,
    ]));
    let (body, code) = r.stdout.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(code, "404", "{body}");
    assert!(body.contains("blocked"), "{body}");
    assert_eq!(log.access_lines(&img.repo), Vec::<String>::new());
    assert_eq!(node.sb.refs(), Vec::<String>::new());
    let (status, _) = serving.stop();
    assert!(status.success());
}

/// `serve`'s pull-through goes where a pull goes: the mirror its registries.conf names, so a
/// node serve keeps working for its engines when only the site mirror can be reached.
/// Regression: serve asked the origin alone, and with the origin down served nothing new.
#[test]
fn serve_pulls_through_the_mirror_of_its_registries_conf_with_the_origin_down() {
    assert_system_drop_ins_configure_no_registry();
    let mut origin = PrivateRegistry::start();
    let img = fresh_image("serve-mirror", &[200_000, 30_000]);
    let repo = img.repo.as_str();
    copy_image(&img, &origin.addr, repo);
    let remote = format!("http://{}", origin.addr);
    let mirror = PrivateRegistry::start_mode("proxy", &[("REMOTE_URL", &remote)]);
    let o = origin.addr.clone();
    let conf = registries_conf(&o, &o, &[(&mirror.addr, "")]);
    // A first home fills the mirror; then the origin goes away.
    Node::new(&conf).pull(&[&origin.reference(&format!("{repo}:v1"))]);
    wait_until_stored(&mirror, repo, &img);
    origin.stop();

    let node = Node::new(&conf);
    let conf_path = path_str(&node.conf).to_owned();
    let serving = Serving::start_with_env(
        &node.sb,
        &[],
        &[("CONTAINERS_REGISTRIES_CONF", conf_path.as_str())],
    );
    let mirror_log = mirror.mark();
    let client = Sandbox::new();
    let through = format!("{}/{}/{repo}:v1", serving.addr, o.replace(':', "__"));
    let doc = client.json(&["pull", &through]);
    assert_eq!(
        doc["manifest_digest"],
        img.manifest_digest.as_str(),
        "{doc:#}"
    );
    assert_eq!(doc["image_id"], img.config_digest.as_str(), "{doc:#}");
    let by_serve: Vec<Hit> = hits(&mirror_log)
        .into_iter()
        .filter(|h| h.agent.contains(" serve/"))
        .collect();
    assert!(
        by_serve.iter().any(|h| h.manifest_get(repo) == Some("v1")),
        "{by_serve:#?}"
    );
    assert_eq!(blob_gets(&by_serve, repo), once_each(&img), "{by_serve:#?}");
    assert_eq!(
        node.sb.refs(),
        vec![format!("{o}/{repo}:v1")],
        "the serve's cache records the origin's name"
    );
    node.sb
        .assert_fsck_deep_clean_at(&node.sb.root, "serve's cache");
    let (status, stderr) = serving.stop();
    assert!(status.success(), "{stderr}");
}

/// `serve --print-config podman` writes a registries.conf mirror that names the serve, and
/// the serve on the same machine reads it too. Its pull-through then reaches itself first:
/// that request is told "unknown" at once, and the origin is asked next. Regression guards:
/// without telling its own requests apart, the serve waited on itself; answering them from
/// its cache, it took its own cached tag for the upstream's and never saw the tag move.
#[test]
fn serve_named_as_a_mirror_by_its_own_registries_conf_never_waits_on_itself() {
    assert_system_drop_ins_configure_no_registry();
    let origin = PrivateRegistry::start();
    let img = fresh_image("serve-self-mirror", &[50_000]);
    let repo = img.repo.as_str();
    copy_image(&img, &origin.addr, repo);
    let node = Node::new(&Config::RegistriesConf(String::new()));
    let conf_path = path_str(&node.conf).to_owned();
    let serving = Serving::start_with_env(
        &node.sb,
        &[],
        &[("CONTAINERS_REGISTRIES_CONF", conf_path.as_str())],
    );
    let (o, served) = (origin.addr.clone(), serving.addr.clone());
    let prefix = o.replace(':', "__");
    // Read at the first pull-through, so written now that the serve's address is known.
    fs::write(
        &node.conf,
        format!(
            "[[registry]]\nprefix = \"{o}\"\nlocation = \"{o}\"\n\n\
             [[registry.mirror]]\nlocation = \"{served}/{prefix}\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    let origin_log = origin.mark();
    let client = Sandbox::new();
    let doc = client.json(&["pull", &format!("{served}/{prefix}/{repo}:v1")]);
    assert_eq!(
        doc["manifest_digest"],
        img.manifest_digest.as_str(),
        "{doc:#}"
    );
    assert_eq!(doc["image_id"], img.config_digest.as_str(), "{doc:#}");
    let at_origin = hits(&origin_log);
    assert_eq!(
        blob_gets(&at_origin, repo),
        once_each(&img),
        "{at_origin:#?}"
    );

    // The tag moves at the origin: the serve's next answer is the new image, not its own
    // cached one handed back to it by itself.
    let moved = fresh_image("serve-self-mirror-moved", &[40_000]);
    copy_image(&moved, &o, repo);
    let doc = Sandbox::new().json(&["pull", &format!("{served}/{prefix}/{repo}:v1")]);
    assert_eq!(
        doc["manifest_digest"],
        moved.manifest_digest.as_str(),
        "{doc:#}"
    );
    assert_eq!(doc["image_id"], moved.config_digest.as_str(), "{doc:#}");

    let (status, stderr) = serving.stop();
    assert!(status.success(), "{stderr}");
    // Each time it asked itself once and was told at once that it has nothing there.
    let asked_itself: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&format!("{served}/{prefix}/{repo} failed")))
        .collect();
    assert_eq!(asked_itself.len(), 2, "{stderr}");
    assert!(
        asked_itself[0].contains("not found in the registry"),
        "{stderr}"
    );
    assert!(!stderr.contains("timed out"), "{stderr}");
}
