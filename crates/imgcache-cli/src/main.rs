//! `imgcache`: the command line over the imgcache library.
//!
//! Exit codes: 0 success; 1 a check said no (invalid, mismatch, not present); 2 usage;
//! 3 environment (I/O, network, engine, disk full, lock timeout).

mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use imgcache::{Archive, ImageId, Level, VerifyOptions, verify_paths};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check image archives: is each the image expected, and intact?
    Verify(VerifyArgs),
    /// Show what an image archive holds.
    Inspect(InspectArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// Archive files, or directories whose files are all checked (in parallel).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// Also decompress and hash every layer (reads every byte).
    #[arg(long)]
    deep: bool,
    /// The image ID the archive must hold (sha256:<hex> or bare hex).
    #[arg(long, value_name = "IMAGE_ID", value_parser = parse_image_id)]
    expect: Option<ImageId>,
    /// Check only the image with this tag or image ID (for archives holding several).
    #[arg(long, value_name = "REF|IMAGE_ID")]
    image: Option<String>,
}

#[derive(Args)]
struct InspectArgs {
    /// Archive file.
    #[arg(value_name = "FILE")]
    path: PathBuf,
}

fn parse_image_id(s: &str) -> Result<ImageId, String> {
    ImageId::parse_user(s).map_err(|e| e.to_string())
}

/// Exit codes of the CLI contract.
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const CHECK_FAILED: u8 = 1;
    pub const ENVIRONMENT: u8 = 3;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("IMGCACHE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("imgcache: {e:#}");
            ExitCode::from(exit::ENVIRONMENT)
        }
    }
}

fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Verify(args) => {
            let opts = VerifyOptions {
                level: if args.deep { Level::Deep } else { Level::Fast },
                expect: args.expect,
                image: args.image.clone(),
            };
            let reports = verify_paths(&args.paths, &opts);
            output::verify(&reports, opts.level, cli.json)?;
            Ok(if reports.iter().all(|r| r.ok) {
                exit::OK
            } else if reports.iter().any(|r| r.is_environment_error()) {
                exit::ENVIRONMENT
            } else {
                exit::CHECK_FAILED
            })
        }
        Command::Inspect(args) => match Archive::open(&args.path) {
            Ok(archive) => {
                output::inspect(&archive, cli.json)?;
                Ok(exit::OK)
            }
            Err(e) => {
                output::error(&args.path, &e, cli.json)?;
                Ok(if e.is_environment() {
                    exit::ENVIRONMENT
                } else {
                    exit::CHECK_FAILED
                })
            }
        },
    }
}
