//! `imgcache`: the command line over the imgcache library.
//!
//! Exit codes: 0 success; 1 a check said no (invalid, mismatch, not present); 2 usage;
//! 3 environment (I/O, network, engine, disk full, lock timeout).

mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use imgcache::archive::write::SaveFormat;
use imgcache::cache::{CacheOptions, PullOptions, PushOptions, SyncOptions, default_root};
use imgcache::registry::Credentials;
use imgcache::{Archive, Cache, Error, ImageId, Level, PlatformSpec, VerifyOptions};

#[derive(Parser)]
#[command(
    name = "imgcache",
    version,
    about = "Know container images by their content digest"
)]
struct Cli {
    /// Print one JSON document on stdout instead of human text.
    #[arg(long, global = true)]
    json: bool,
    /// The cache directory [default: $IMGCACHE_HOME, else $XDG_CACHE_HOME/imgcache, else ~/.cache/imgcache]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry into the cache.
    Pull(PullArgs),
    /// Check image archives (FILE or DIR) or a cached image (REF): the image expected, intact?
    Verify(VerifyArgs),
    /// Show what an image archive (FILE) or a cached image (REF) holds.
    Inspect(InspectArgs),
    /// Write a cached image as a tarball every engine loads.
    Save {
        #[arg(value_name = "REF")]
        reference: String,
        /// Output file, or - for stdout.
        #[arg(short, long, value_name = "FILE|-")]
        output: String,
        /// combined (Docker 25+ layout, loads everywhere), legacy (pre-25 Docker), oci
        #[arg(long, default_value = "combined")]
        format: SaveFormat,
        /// Leave the kept signatures out of an OCI file: one manifest, as `podman load` wants.
        #[arg(long)]
        no_signatures: bool,
    },
    /// Import an image archive of any dialect into the cache (verified deep first).
    Import {
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// Record the image under this reference (instead of the archive's tags).
        #[arg(long, value_name = "REF")]
        tag: Option<String>,
        /// Import only the image with this tag or image ID.
        #[arg(long, value_name = "REF|IMAGE_ID")]
        image: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Cached? Valid? Already in the engine (by image ID, and under the tag)?
    Status {
        #[arg(value_name = "REF")]
        reference: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Give the engine the image only when it lacks its image ID (pulls first if needed).
    Load {
        #[arg(value_name = "REF")]
        reference: String,
        #[command(flatten)]
        engine: EngineArgs,
        /// os/arch[/variant] to pull when the image is not cached [default: this machine's]
        #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
        platform: Option<PlatformSpec>,
        /// Use the cache only; never touch the network.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// List cached images.
    Ls,
    /// Drop a reference from the cache (its blobs stay until prune).
    Rm {
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Remove blobs no reference needs; --max-size evicts least recently used images first.
    Prune {
        /// e.g. 10G, 500M, 1048576 (bytes)
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
    },
    /// Push a cached image to a registry, byte for byte (the destination's digest is the cached one).
    Push(PushArgs),
    /// Mirror a list of images into a registry through the cache: REGISTRY/PREFIX/PATH:TAG.
    Sync(SyncArgs),
    /// Serve the cache read-only over the registry protocol (a pull-through mirror).
    Serve(ServeArgs),
    /// Check the cache: missing, corrupt and unreferenced blobs.
    Fsck {
        /// Re-hash every blob.
        #[arg(long)]
        deep: bool,
        /// Rebuild index records from stored manifests and remove corrupt blobs.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Args)]
struct RegistryArgs {
    /// Allow plain http and unverified TLS for every registry.
    #[arg(long)]
    insecure: bool,
    /// USER:PASSWORD for the registry (else Docker's and Podman's credential files are used).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// An extra CA certificate (PEM) to trust.
    #[arg(long, value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
    /// A containerd hosts directory (DIR/HOST[:PORT]/hosts.toml): the mirrors to pull through.
    #[arg(long, value_name = "DIR")]
    hosts_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// ADDR:PORT to listen on; port 0 picks a free one. Another address than loopback is logged.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5050")]
    listen: std::net::SocketAddr,
    /// Answer from the cache only; never ask an origin registry.
    #[arg(long)]
    offline: bool,
    /// Serve https with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Print the files that point ENGINE (containerd, docker, podman, crio) at --listen, and exit.
    #[arg(long, value_name = "ENGINE")]
    print_config: Option<imgcache::serve::EngineConfig>,
    /// A registry --print-config covers (repeatable) [default: the cache's registries and docker.io]
    #[arg(
        long = "registry",
        value_name = "HOST[:PORT]",
        requires = "print_config"
    )]
    registries: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct EngineArgs {
    /// auto, docker, podman, containerd or crio. auto: DOCKER_HOST, CONTAINER_HOST,
    /// CONTAINERD_ADDRESS, CONTAINER_RUNTIME_ENDPOINT, then the Docker context or socket,
    /// podman, containerd's and CRI-O's sockets.
    #[arg(long, value_name = "ENGINE", default_value = "auto")]
    engine: String,
}

impl EngineArgs {
    fn engine(&self) -> Result<Box<dyn imgcache::engine::Engine>> {
        let kind = match self.engine.as_str() {
            "auto" => None,
            other => Some(other.parse::<imgcache::engine::EngineKind>().map_err(|_| {
                UsageError("--engine takes auto, docker, podman, containerd or crio")
            })?),
        };
        Ok(imgcache::engine::detect(kind)?)
    }
}

/// Who must have signed what (containers' policy.json).
#[derive(Args, Clone)]
struct PolicyArgs {
    /// Signature policy (containers' policy.json) [default: $IMGCACHE_POLICY, else
    /// /etc/imgcache/policy.json when it exists; none: nothing is checked]
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// Where the policy lives when no --policy is given. Not containers' own
/// /etc/containers/policy.json: a system policy written for podman's GPG signatures would
/// make every pull here fail.
const DEFAULT_POLICY: &str = "/etc/imgcache/policy.json";

impl PolicyArgs {
    fn load(&self) -> Result<Option<Arc<imgcache::policy::Policy>>> {
        let path = match (&self.policy, std::env::var_os("IMGCACHE_POLICY")) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
            _ if Path::new(DEFAULT_POLICY).exists() => PathBuf::from(DEFAULT_POLICY),
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(imgcache::policy::Policy::load(&path)?)))
    }
}

#[derive(Args)]
struct PullArgs {
    #[arg(value_name = "REF")]
    reference: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// os/arch[/variant] to pull from a multi-platform image [default: this machine's]
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    platform: Option<PlatformSpec>,
    /// Answer from the cache only; never touch the network.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct PushArgs {
    /// The cached image (reference or image ID).
    #[arg(value_name = "REF")]
    reference: String,
    /// HOST/REPO[:TAG|@DIGEST]; no tag means latest.
    #[arg(value_name = "DEST")]
    destination: String,
    /// Push this platform's manifest alone instead of the whole index.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    platform: Option<PlatformSpec>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct SyncArgs {
    /// Image lists (one reference per line, # comments) or references.
    #[arg(required = true, value_name = "FILE|REF")]
    images: Vec<String>,
    /// REGISTRY[/PREFIX]: HOST/PATH:TAG lands at REGISTRY/PREFIX/PATH:TAG.
    #[arg(long, value_name = "REGISTRY[/PREFIX]")]
    to: String,
    /// Sync this platform alone instead of every platform of an index.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    platform: Option<PlatformSpec>,
    /// Images synced at once.
    #[arg(long, value_name = "N", default_value_t = imgcache::cache::DEFAULT_SYNC_PARALLEL)]
    parallel: usize,
    /// Pulls go under this policy, and the signatures it accepted are copied along.
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// Archive files, directories whose files are all checked, or one cached reference.
    #[arg(required = true, value_name = "FILE|DIR|REF")]
    targets: Vec<String>,
    /// Also decompress and hash every layer (reads every byte).
    #[arg(long)]
    deep: bool,
    /// The image ID the archive must hold (sha256:<hex> or bare hex).
    #[arg(long, value_name = "IMAGE_ID", value_parser = parse_image_id)]
    expect: Option<ImageId>,
    /// Check only the image with this tag or image ID (for archives holding several).
    #[arg(long, value_name = "REF|IMAGE_ID")]
    image: Option<String>,
    /// Do not use or record remembered deep verifications of unchanged files.
    #[arg(long)]
    no_memo: bool,
    /// Re-check the kept signatures of a cached REF under the policy, offline.
    #[arg(long)]
    signatures: bool,
    #[command(flatten)]
    policy: PolicyArgs,
}

#[derive(Args)]
struct InspectArgs {
    #[arg(value_name = "FILE|REF")]
    target: String,
}

fn parse_image_id(s: &str) -> Result<ImageId, String> {
    ImageId::parse_user(s).map_err(|e| e.to_string())
}

/// A usage mistake found after parsing (exit code 2).
#[derive(Debug)]
struct UsageError(&'static str);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for UsageError {}

fn parse_platform(s: &str) -> Result<PlatformSpec, String> {
    PlatformSpec::parse(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_uppercase();
            let m: u64 = match unit.trim_end_matches(['B', 'I']) {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(format!("unknown size unit in {s:?} (use K, M, G or T)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size"))?;
    Ok((n * mult as f64) as u64)
}

/// Exit codes of the CLI contract.
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const CHECK_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ENVIRONMENT: u8 = 3;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings (a fallback taken, an index no longer stored) are shown unless IMGCACHE_LOG says
    // otherwise.
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_env_var("IMGCACHE_LOG")
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs read by scripts and files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(&cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                _ if e.is::<UsageError>() => exit::USAGE,
                Some(Error::Usage(_) | Error::Policy { .. }) => exit::USAGE,
                Some(err) if !err.is_environment() => exit::CHECK_FAILED,
                _ => exit::ENVIRONMENT,
            };
            if cli.json {
                output::error_json(&e);
            }
            // The library's errors already say their cause; anyhow's `{:#}` would repeat it.
            match e.downcast_ref::<Error>() {
                Some(err) => eprintln!("imgcache: {err}"),
                None => eprintln!("imgcache: {e:#}"),
            }
            ExitCode::from(code)
        }
    }
}

fn cache_options(cli: &Cli, registry: Option<&RegistryArgs>) -> Result<CacheOptions> {
    let root = cli.root.clone().unwrap_or_else(default_root);
    let mut opts = CacheOptions::new(&root);
    if let Some(r) = registry {
        opts.registry.insecure = r.insecure;
        opts.registry.ca_certs.extend(r.ca_cert.iter().cloned());
        if r.hosts_dir.is_some() {
            opts.mirrors.hosts_dir = r.hosts_dir.clone();
        }
        if let Some(c) = &r.creds {
            // Checked here, not by clap, whose usage error would print the value: a password.
            opts.registry.creds =
                Some(Credentials::parse(c).ok_or(UsageError("--creds takes USER:PASSWORD"))?);
        }
    }
    Ok(opts)
}

fn open_cache(cli: &Cli, registry: Option<&RegistryArgs>) -> Result<Cache> {
    Ok(Cache::open_with(cache_options(cli, registry)?)?)
}

/// Writes next to `path` and renames into place, so a failed save leaves no partial file.
/// `save` is handed the file's writer as it is: `io::copy` moves blob bytes in the kernel only
/// into a `BufWriter<File>`.
fn save_to_file(
    save: impl FnOnce(std::io::BufWriter<std::fs::File>) -> Result<imgcache::cache::SaveReport, Error>,
    path: &Path,
) -> Result<imgcache::cache::SaveReport> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", path.display()))?;
    if !dir.is_dir() {
        return Err(Error::Io {
            path: path.into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "its directory does not exist",
            ),
        }
        .into());
    }
    let tmp = dir.join(format!(
        ".{}.{}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<_> {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e,
        })?;
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let img = save(writer).map_err(|e| match e {
            // Name the file being written, not the archive writer's placeholder.
            Error::Io { path: p, source } if p == Path::new(imgcache::archive::write::OUTPUT) => {
                Error::Io {
                    path: path.into(),
                    source,
                }
            }
            other => other,
        })?;
        std::fs::rename(&tmp, path).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
        Ok(img)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// `verify` and `inspect` take files or a reference: an existing path is a file.
fn is_file_target(t: &str) -> bool {
    Path::new(t).exists()
        || t.starts_with('.')
        || t.starts_with('/')
        || t.ends_with(".tar")
        || t.ends_with(".tar.gz")
}

async fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Pull(args) => {
            let cache = open_cache(cli, Some(&args.registry))?;
            let progress = output::Progress::bytes(cli.json);
            let opts = PullOptions {
                platform: args.platform.clone(),
                offline: args.offline,
                progress: progress.pull_callback().map(|f| Arc::new(f) as _),
                policy: args.policy.load()?,
            };
            let report = cache.pull(&args.reference, &opts).await;
            progress.finish();
            output::pull(&report?, cli.json)?;
            Ok(exit::OK)
        }
        Command::Push(args) => {
            let cache = open_cache(cli, Some(&args.registry))?;
            let progress = output::Progress::bytes(cli.json);
            let opts = PushOptions {
                platform: args.platform.clone(),
                progress: progress.push_callback().map(|f| Arc::new(f) as _),
            };
            let report = cache.push(&args.reference, &args.destination, &opts).await;
            progress.finish();
            output::push(&report?, cli.json)?;
            Ok(exit::OK)
        }
        Command::Sync(args) => {
            let mut images = Vec::new();
            for a in &args.images {
                let path = Path::new(a);
                if path.is_file() {
                    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
                        path: path.into(),
                        source: e,
                    })?;
                    images.extend(imgcache::cache::read_image_list(&text));
                } else {
                    images.push(a.clone());
                }
            }
            let cache = open_cache(cli, Some(&args.registry))?;
            let progress = output::Progress::images(cli.json, images.len());
            let opts = SyncOptions {
                platform: args.platform.clone(),
                parallel: args.parallel,
                progress: progress.sync_callback().map(|f| Arc::new(f) as _),
                policy: args.policy.load()?,
            };
            let report = cache.sync(&images, &args.to, &opts).await;
            progress.finish();
            let report = report?;
            output::sync(&report, cli.json)?;
            // An environment failure anywhere outweighs a check that said no, whatever the order.
            let failed = report.images.iter().filter(|i| i.error.is_some());
            Ok(match failed.map(|i| i.environment).max() {
                None => exit::OK,
                Some(true) => exit::ENVIRONMENT,
                Some(false) => exit::CHECK_FAILED,
            })
        }
        Command::Verify(args) => {
            let level = if args.deep { Level::Deep } else { Level::Fast };
            let opts = VerifyOptions {
                level,
                expect: args.expect,
                image: args.image.clone(),
            };
            if args.signatures {
                let [target] = args.targets.as_slice() else {
                    return Err(UsageError("--signatures checks one cached REF").into());
                };
                let Some(policy) = args.policy.load()? else {
                    return Err(UsageError(
                        "--signatures needs a policy: --policy FILE or $IMGCACHE_POLICY",
                    )
                    .into());
                };
                let cache = open_cache(cli, None)?;
                let accepted = cache.verify_signatures(target, &policy)?;
                let text = match accepted.signers.as_slice() {
                    [] => format!(
                        "{target}: accepted by {} (no signature required)",
                        accepted.scope
                    ),
                    signers => signers
                        .iter()
                        .map(|s| {
                            format!(
                                "{target}: signed by {} ({})",
                                s.signed_by,
                                s.format.as_str()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                };
                output::simple(
                    &serde_json::json!({"ok": true, "reference": target, "scope": accepted.scope, "signers": accepted.signers}),
                    &text,
                    cli.json,
                )?;
                return Ok(exit::OK);
            }
            if args.targets.len() == 1 && !is_file_target(&args.targets[0]) {
                let cache = open_cache(cli, None)?;
                let mut report = cache.verify(&args.targets[0], level)?;
                if let Some(expect) = args.expect
                    && report.image_id != Some(expect)
                {
                    report.failures.push(
                        imgcache::Problem::new(
                            imgcache::Check::ExpectedImageId,
                            "the cached image is not the one expected",
                        )
                        .mismatch(
                            expect,
                            report.image_id.map_or("unknown".into(), |d| d.to_string()),
                        ),
                    );
                    report.ok = false;
                }
                output::verify_ref(&args.targets[0], &report, level, cli.json)?;
                return Ok(if report.ok {
                    exit::OK
                } else {
                    exit::CHECK_FAILED
                });
            }
            let paths: Vec<PathBuf> = args.targets.iter().map(PathBuf::from).collect();
            let root = cli.root.clone().unwrap_or_else(default_root);
            let memo = (level == Level::Deep && !args.no_memo).then_some(root.as_path());
            let reports = imgcache::verify::verify_paths_memo(&paths, &opts, memo);
            output::verify(&reports, level, cli.json)?;
            Ok(if reports.iter().all(|r| r.ok) {
                exit::OK
            } else if reports.iter().any(|r| r.is_environment_error()) {
                exit::ENVIRONMENT
            } else {
                exit::CHECK_FAILED
            })
        }
        Command::Inspect(args) => {
            if !is_file_target(&args.target) {
                let cache = open_cache(cli, None)?;
                output::inspect_ref(&cache.inspect(&args.target)?, cli.json)?;
                return Ok(exit::OK);
            }
            let path = Path::new(&args.target);
            match Archive::open(path) {
                Ok(archive) => {
                    output::inspect(&archive, cli.json)?;
                    Ok(exit::OK)
                }
                Err(e) => {
                    output::error(path, &e, cli.json)?;
                    Ok(if e.is_environment() {
                        exit::ENVIRONMENT
                    } else {
                        exit::CHECK_FAILED
                    })
                }
            }
        }
        Command::Save {
            reference,
            output,
            format,
            no_signatures,
        } => {
            let cache = open_cache(cli, None)?;
            let signatures = !no_signatures;
            let report = if output == "-" {
                let stdout = std::io::stdout().lock();
                cache.save_with(
                    reference,
                    *format,
                    signatures,
                    std::io::BufWriter::with_capacity(1 << 20, stdout),
                )?
            } else {
                let save = |out| cache.save_with(reference, *format, signatures, out);
                save_to_file(save, Path::new(output))?
            };
            if output != "-" {
                output::save(&report, reference, output, format, cli.json)?;
            } else if let Some(note) = output::save_index_note(&report).filter(|_| !cli.json) {
                eprintln!("{reference}: {note}");
            }
            Ok(exit::OK)
        }
        Command::Import {
            path,
            tag,
            image,
            policy,
        } => {
            let cache = open_cache(cli, None)?;
            let policy = policy.load()?;
            let imported =
                cache.import(path, tag.as_deref(), image.as_deref(), policy.as_deref())?;
            let text = imported
                .iter()
                .map(|i| format!("imported {} as {}", i.image_id, i.references.join(", ")))
                .collect::<Vec<_>>()
                .join("\n");
            output::simple(
                &serde_json::json!({"ok": true, "images": imported}),
                &text,
                cli.json,
            )?;
            Ok(exit::OK)
        }
        Command::Status { reference, engine } => {
            let cache = open_cache(cli, None)?;
            let engine = engine.engine()?;
            let r = cache.status(reference, engine.as_ref())?;
            output::status(&r, cli.json)?;
            let ready = r.valid && r.engine.present && r.engine.tagged;
            Ok(if ready { exit::OK } else { exit::CHECK_FAILED })
        }
        Command::Load {
            reference,
            engine,
            platform,
            offline,
            registry,
            policy,
        } => {
            let cache = open_cache(cli, Some(registry))?;
            let engine = engine.engine()?;
            let progress = output::Progress::bytes(cli.json);
            let opts = PullOptions {
                platform: platform.clone(),
                offline: *offline,
                progress: progress.pull_callback().map(|f| Arc::new(f) as _),
                policy: policy.load()?,
            };
            let r = cache.load(reference, engine.as_ref(), &opts).await;
            progress.finish();
            output::load(&r?, cli.json)?;
            Ok(exit::OK)
        }
        Command::Ls => {
            let cache = open_cache(cli, None)?;
            output::ls(&cache.ls()?, cli.json)?;
            Ok(exit::OK)
        }
        Command::Rm { reference } => {
            let cache = open_cache(cli, None)?;
            let n = cache.rm(reference)?;
            output::simple(
                &serde_json::json!({"ok": true, "removed": reference, "records": n}),
                &format!("removed {reference}"),
                cli.json,
            )?;
            Ok(exit::OK)
        }
        Command::Prune { max_size } => {
            let cache = open_cache(cli, None)?;
            let r = cache.prune(*max_size)?;
            let text = format!(
                "removed {} blobs ({}), {} images, evicted {} references",
                r.blobs_removed,
                output::human_size(r.bytes_freed),
                r.images_removed,
                r.references_evicted.len()
            );
            output::simple(&r, &text, cli.json)?;
            Ok(exit::OK)
        }
        Command::Serve(args) => serve(cli, args).await,
        Command::Fsck { deep, repair } => {
            let cache = if *repair {
                Cache::open_for_repair(cache_options(cli, None)?)?
            } else {
                open_cache(cli, None)?
            };
            let r = cache.fsck(*deep, *repair)?;
            output::fsck(&r, cli.json)?;
            Ok(if r.ok { exit::OK } else { exit::CHECK_FAILED })
        }
    }
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Result<u8> {
    let mut opts = cache_options(cli, Some(&args.registry))?;
    // Should a mirror configuration send its pull-through back here, it is told apart.
    opts.registry.serve_id = Some(imgcache::serve::instance_id());
    let cache = Arc::new(Cache::open_with(opts)?);
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(engine) = args.print_config {
        if args.listen.ip().is_unspecified() || args.listen.port() == 0 {
            return Err(UsageError(
                "--print-config needs the --listen address engines reach (not 0.0.0.0, not port 0)",
            )
            .into());
        }
        let url = format!("{scheme}://{}", args.listen);
        let registries = if args.registries.is_empty() {
            let mut r: std::collections::BTreeSet<String> =
                cache.origins()?.into_iter().map(|o| o.registry).collect();
            r.insert(imgcache::reference::DEFAULT_REGISTRY.into());
            r.into_iter().collect()
        } else {
            args.registries.clone()
        };
        let files = imgcache::serve::print_config(engine, &url, &registries);
        output::serve_config(&url, &files, cli.json)?;
        return Ok(exit::OK);
    }
    let opts = imgcache::serve::ServeOptions {
        listen: args.listen,
        offline: args.offline,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        ..Default::default()
    };
    let server = imgcache::serve::Server::bind(cache, opts).await?;
    output::serve_listening(&server.url(), cli.json)?;
    server.run(shutdown_signal()).await?;
    Ok(exit::OK)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the default action (exit) still stops the server.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
