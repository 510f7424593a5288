//! Running an engine's command-line tool: bounded output, a deadline, and stdin streamed from a
//! producer (so a multi-gigabyte tarball never sits in memory or in a temporary file of ours).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{EngineImage, EngineKind, engine_error, listed_image, unavailable};
use crate::error::Error;

/// Deadline of a liveness check.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of a query (inspect, list, tag).
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
/// stdout kept from one command: image lists of a busy node stay far below this.
const MAX_STDOUT: usize = 64 << 20;
/// stderr kept from one command: the engine's message, not its progress bars.
const MAX_STDERR: usize = 64 << 10;
/// How long to wait for the end of a finished command's output (a grandchild may hold it).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Writes a command's stdin.
type Producer<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<(), Error>;

/// A command-line tool with its global arguments and extra environment.
#[derive(Debug, Clone)]
pub(crate) struct Cli {
    pub program: PathBuf,
    pub global_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What a finished command said.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The engine's message: stderr (or stdout when stderr is empty), trimmed and bounded.
    pub fn message(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            String::from_utf8_lossy(&self.stdout).into_owned()
        } else {
            self.stderr.clone()
        };
        let text = text.trim();
        if text.is_empty() {
            return format!("exited with {}", self.status);
        }
        bounded(text, 4000)
    }
}

/// Why a command gave no [`Output`].
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started (`NotFound`: not installed or not in PATH).
    Spawn(io::Error),
    /// No exit within the deadline: the process was killed.
    Timeout(Duration),
    /// More output than [`MAX_STDOUT`]: the process was killed.
    TooMuchOutput,
    /// The stdin producer failed while the engine was still reading: the engine was killed
    /// before it saw the end of its input, so nothing half-written is loaded.
    Input(Error),
    /// Waiting for the process failed.
    Wait(io::Error),
}

impl Cli {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            global_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `program GLOBAL_ARGS args`, stdin empty, killed after `timeout`.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<Output, RunError> {
        self.run_inner(args, None, Some(timeout))
    }

    /// `program GLOBAL_ARGS args` with stdin written by `produce`, no deadline (a load of a big
    /// image takes as long as it takes).
    pub fn run_with_stdin(
        &self,
        args: &[&str],
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<Output, RunError> {
        self.run_inner(args, Some(produce), None)
    }

    /// The command line, for messages.
    pub fn display(&self, args: &[&str]) -> String {
        let mut s = self.program.display().to_string();
        for a in self
            .global_args
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
        {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    fn run_inner(
        &self,
        args: &[&str],
        produce: Option<Producer<'_>>,
        timeout: Option<Duration>,
    ) -> Result<Output, RunError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global_args)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if produce.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(RunError::Spawn)?;
        let overflow = Arc::new(AtomicBool::new(false));
        let mut readers = Readers {
            stdout: child
                .stdout
                .take()
                .map(|r| spawn_reader(r, MAX_STDOUT, Some(overflow.clone()))),
            stderr: child
                .stderr
                .take()
                .map(|r| spawn_reader(r, MAX_STDERR, None)),
        };

        let mut input_error = None;
        if let (Some(produce), Some(stdin)) = (produce, child.stdin.take()) {
            let mut w = HoldBack::new(PipeWriter {
                inner: stdin,
                broken: false,
            });
            let result = produce(&mut w)
                .and_then(|()| w.release().map_err(|e| Error::io("<engine stdin>", e)));
            if let Err(e) = result {
                if !w.inner.broken {
                    // Our side failed while the engine still reads: stop it before it sees EOF.
                    kill(&mut child);
                    drop(w);
                    readers.abandon();
                    return Err(RunError::Input(e));
                }
                // The engine stopped reading: its exit status and message say why.
                input_error = Some(e);
            }
            drop(w);
        }

        let deadline = timeout.map(|t| (Instant::now() + t, t));
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    kill(&mut child);
                    readers.abandon();
                    return Err(RunError::Wait(e));
                }
            }
            if overflow.load(Ordering::Relaxed) {
                kill(&mut child);
                readers.abandon();
                return Err(RunError::TooMuchOutput);
            }
            if let Some((at, t)) = deadline
                && Instant::now() >= at
            {
                kill(&mut child);
                readers.abandon();
                return Err(RunError::Timeout(t));
            }
            // Woken as soon as the child closes its stdout (usually: exits), rather than at the
            // end of a pause: a 30 ms `ctr` would otherwise cost up to 25 ms more.
            let ended = match readers.stdout.as_mut().filter(|r| !r.finished) {
                Some(r) => r.wait(pause),
                None => {
                    thread::sleep(pause);
                    false
                }
            };
            pause = if ended {
                Duration::from_millis(1)
            } else {
                (pause * 2).min(Duration::from_millis(25))
            };
        };
        let (stdout, stderr) = readers.join();
        if overflow.load(Ordering::Relaxed) {
            return Err(RunError::TooMuchOutput);
        }
        if let Some(e) = input_error
            && status.success()
        {
            return Err(RunError::Input(e));
        }
        Ok(Output {
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

/// An engine's CLI as its adapter runs it: what the engine is, where, what its tool is called
/// in messages and how that tool says "no engine there". A command that fails becomes the
/// engine's error (unavailable when the tool's message says so); one that gives no output,
/// likewise.
pub(crate) struct EngineCli<'a> {
    kind: EngineKind,
    cli: &'a Cli,
    /// The socket, address or store, for messages ([`super::Engine::endpoint`]).
    endpoint: String,
    /// The command as failure messages name it: `docker`, `ctr -n k8s.io`.
    name: String,
    /// The tool's words for "no engine there" (lowercase).
    unreachable: &'static [&'static str],
}

impl<'a> EngineCli<'a> {
    pub fn new(
        kind: EngineKind,
        cli: &'a Cli,
        endpoint: impl Into<String>,
        name: impl Into<String>,
        unreachable: &'static [&'static str],
    ) -> Self {
        Self {
            kind,
            cli,
            endpoint: endpoint.into(),
            name: name.into(),
            unreachable,
        }
    }

    /// `args` within [`PING_TIMEOUT`]: any failure is "unavailable", with the tool's message.
    pub fn ping(&self, args: &[&str]) -> Result<(), Error> {
        let out = self.run(args, PING_TIMEOUT)?;
        if !out.success() {
            return Err(unavailable(self.kind, &self.endpoint, out.message()));
        }
        Ok(())
    }

    /// `args` within [`QUERY_TIMEOUT`], which must succeed: its output.
    pub fn query(&self, args: &[&str]) -> Result<Output, Error> {
        let out = self.run(args, QUERY_TIMEOUT)?;
        self.succeeded(args, out)
    }

    /// [`EngineCli::query`], except that a failure whose message says one of `not_found`
    /// (lowercase: the tool's words for "no such image") is `None`.
    pub fn query_found(&self, args: &[&str], not_found: &[&str]) -> Result<Option<Output>, Error> {
        let out = self.run(args, QUERY_TIMEOUT)?;
        if !out.success() && says_any(&out.message(), not_found) {
            return Ok(None);
        }
        self.succeeded(args, out).map(Some)
    }

    /// `NAME SUBCOMMAND... image` (`docker image inspect NAME`), which prints a JSON list:
    /// its first element; `None` when the list is empty or the tool says one of `not_found`.
    pub fn inspect(
        &self,
        subcommand: &[&str],
        image: &str,
        not_found: &[&str],
    ) -> Result<Option<Inspect>, Error> {
        let mut args = subcommand.to_vec();
        args.push(image);
        let Some(out) = self.query_found(&args, not_found)? else {
            return Ok(None);
        };
        let what = format!("{} {}", self.name, subcommand.join(" "));
        let list: Vec<Inspect> = parse_json(self.kind, &what, &out.stdout)?;
        Ok(list.into_iter().next())
    }

    /// `args` with stdin written by `produce` (an image load), which must succeed.
    pub fn load(
        &self,
        args: &[&str],
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let out = self
            .cli
            .run_with_stdin(args, produce)
            .map_err(|e| self.run_error(args, e))?;
        self.succeeded(args, out).map(drop)
    }

    fn run(&self, args: &[&str], timeout: Duration) -> Result<Output, Error> {
        self.cli
            .run(args, timeout)
            .map_err(|e| self.run_error(args, e))
    }

    /// `out` if the command succeeded; else the engine's error with the tool's message.
    fn succeeded(&self, args: &[&str], out: Output) -> Result<Output, Error> {
        if out.success() {
            return Ok(out);
        }
        let msg = out.message();
        Err(if says_any(&msg, self.unreachable) {
            unavailable(self.kind, &self.endpoint, msg)
        } else {
            engine_error(
                self.kind,
                format!("`{} {}` failed: {msg}", self.name, args.join(" ")),
            )
        })
    }

    /// A command that gave no output, as an error.
    fn run_error(&self, args: &[&str], e: RunError) -> Error {
        let (kind, endpoint, cli) = (self.kind, self.endpoint.as_str(), self.cli);
        match e {
            RunError::Spawn(e) if e.kind() == io::ErrorKind::NotFound => unavailable(
                kind,
                endpoint,
                format!(
                    "the `{}` command is not installed (or not on the PATH)",
                    cli.program.display()
                ),
            ),
            RunError::Spawn(e) => unavailable(
                kind,
                endpoint,
                format!("cannot run `{}`: {e}", cli.program.display()),
            ),
            RunError::Timeout(t) => unavailable(
                kind,
                endpoint,
                format!(
                    "`{}` gave no answer within {} s",
                    cli.display(args),
                    t.as_secs()
                ),
            ),
            RunError::TooMuchOutput => engine_error(
                kind,
                format!("`{}` printed more output than expected", cli.display(args)),
            ),
            RunError::Input(e) => e,
            RunError::Wait(e) => {
                engine_error(kind, format!("waiting for `{}`: {e}", cli.display(args)))
            }
        }
    }
}

/// Whether the tool's message `msg` says one of `words` (lowercase), in any case.
fn says_any(msg: &str, words: &[&str]) -> bool {
    let m = msg.to_ascii_lowercase();
    words.iter().any(|w| m.contains(w))
}

/// The JSON a command printed; `what` names the command in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(
    kind: EngineKind,
    what: &str,
    json: &[u8],
) -> Result<T, Error> {
    serde_json::from_slice(json)
        .map_err(|e| engine_error(kind, format!("`{what}` printed unexpected JSON: {e}")))
}

/// One image of `docker image inspect` / `podman image inspect` (Docker's
/// `GET /images/NAME/json` answers the same object).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Inspect {
    pub id: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
}

impl Inspect {
    pub fn into_image(self, kind: EngineKind) -> Result<EngineImage, Error> {
        listed_image(kind, self.id, self.repo_tags)
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The child's stdout and stderr, read by threads.
struct Readers {
    stdout: Option<Reader>,
    stderr: Option<Reader>,
}

impl Readers {
    /// What was read, waiting up to `grace` for the end of each stream. A reader still blocked
    /// (a killed child's grandchild holds the pipe) is left to finish on its own.
    fn collect(self, grace: Duration) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + grace;
        let take = |r: Option<Reader>| r.map(|r| r.take(deadline)).unwrap_or_default();
        (take(self.stdout), take(self.stderr))
    }

    fn join(self) -> (Vec<u8>, Vec<u8>) {
        self.collect(OUTPUT_GRACE)
    }

    fn abandon(self) {
        self.collect(Duration::ZERO);
    }
}

struct Reader {
    kept: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
    /// The stream has ended (seen by [`Reader::wait`]).
    finished: bool,
}

impl Reader {
    /// Waits up to `pause` for the end of the stream; whether it has ended.
    fn wait(&mut self, pause: Duration) -> bool {
        self.finished = !matches!(
            self.done.recv_timeout(pause),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        self.finished
    }

    fn take(self, deadline: Instant) -> Vec<u8> {
        if !self.finished {
            let _ = self
                .done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *kept)
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes (draining the rest so the child never
/// blocks on a full pipe); sets `overflow` when there was more.
fn spawn_reader(
    mut r: impl Read + Send + 'static,
    cap: usize,
    overflow: Option<Arc<AtomicBool>>,
) -> Reader {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    let shared = kept.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut kept = shared.lock().unwrap_or_else(|e| e.into_inner());
            let room = cap.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
            if n > room
                && let Some(flag) = &overflow
            {
                flag.store(true, Ordering::Relaxed);
            }
        }
        let _ = tx.send(());
    });
    Reader {
        kept,
        done,
        finished: false,
    }
}

/// How much of a streamed load's end is held back until its producer has succeeded. Engines
/// act on the tar's end-of-archive blocks (1 KiB of zeros, padded to at most a 10 KiB record),
/// not on the end of their input: dockerd 20.10 to 28, `ctr images import` of containerd 1.7
/// and 2.1 load a complete tarball while their input is still open. Without its tail the
/// engine cannot see the end of the archive, so a producer that fails after its last byte
/// (a digest checked at the end) still loads nothing.
pub(crate) const HOLD_BACK: usize = 64 << 10;

/// A writer that passes everything through except the last [`HOLD_BACK`] bytes, which only
/// [`HoldBack::release`] writes. `flush` does not release them.
pub(crate) struct HoldBack<W: Write> {
    pub inner: W,
    tail: Vec<u8>,
}

impl<W: Write> HoldBack<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            tail: Vec::with_capacity(2 * HOLD_BACK),
        }
    }

    /// Writes what was held back (the producer is done) and flushes.
    pub fn release(&mut self) -> io::Result<()> {
        let tail = std::mem::take(&mut self.tail);
        self.inner.write_all(&tail)?;
        self.inner.flush()
    }
}

impl<W: Write> Write for HoldBack<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= HOLD_BACK {
            self.inner.write_all(&self.tail)?;
            self.tail.clear();
            let (now, later) = buf.split_at(buf.len() - HOLD_BACK);
            self.inner.write_all(now)?;
            self.tail.extend_from_slice(later);
        } else {
            self.tail.extend_from_slice(buf);
            if self.tail.len() >= 2 * HOLD_BACK {
                let out = self.tail.len() - HOLD_BACK;
                self.inner.write_all(&self.tail[..out])?;
                self.tail.drain(..out);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The child's stdin, remembering whether the child closed its end.
struct PipeWriter {
    inner: ChildStdin,
    broken: bool,
}

impl PipeWriter {
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.broken = true;
        }
        r
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// At most `max` bytes of `text` (on a char boundary), marked when cut.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (Cli, Vec<String>) {
        (
            Cli::new("/bin/sh"),
            vec!["-c".to_owned(), script.to_owned()],
        )
    }

    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn captures_output_and_status() {
        let (cli, a) = sh("echo out; echo err >&2; exit 3");
        let out = cli.run(&args(&a), Duration::from_secs(10)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.message(), "err");
    }

    #[test]
    fn kills_at_the_deadline() {
        let (cli, a) = sh("sleep 30");
        let t = Instant::now();
        let e = cli.run(&args(&a), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, RunError::Timeout(_)), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let cli = Cli::new("/nonexistent/imgcache-no-such-tool");
        match cli.run(&[], Duration::from_secs(5)) {
            Err(RunError::Spawn(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn streams_stdin() {
        let (cli, a) = sh("wc -c");
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            for _ in 0..64 {
                w.write_all(&[7u8; 1 << 16])
                    .map_err(|e| Error::io("x", e))?;
            }
            Ok(())
        };
        let out = cli.run_with_stdin(&args(&a), &mut produce).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4194304");
    }

    #[test]
    fn engine_that_stops_reading_reports_its_own_message() {
        let (cli, a) = sh("head -c 10 >/dev/null; echo 'invalid tar header' >&2; exit 1");
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            loop {
                w.write_all(&[0u8; 1 << 16])
                    .map_err(|e| Error::io("x", e))?;
            }
        };
        let out = cli.run_with_stdin(&args(&a), &mut produce).unwrap();
        assert!(!out.success());
        assert_eq!(out.message(), "invalid tar header");
    }

    /// A stand-in engine tool: `script` sees the adapter's arguments as `$1`...
    fn tool(script: &str) -> Cli {
        let mut cli = Cli::new("/bin/sh");
        cli.global_args = vec!["-c".to_owned(), script.to_owned(), "tool".to_owned()];
        cli
    }

    fn engine_cli(cli: &Cli) -> EngineCli<'_> {
        EngineCli::new(
            EngineKind::Podman,
            cli,
            "the endpoint",
            "tool",
            &["no daemon"],
        )
    }

    #[test]
    fn engine_cli_failures_are_the_engines_errors() {
        let cli = tool("echo \"Error: $2 went wrong\" >&2; exit 1");
        match engine_cli(&cli).query(&["tag", "a", "b"]) {
            Err(Error::Engine { engine, message }) => {
                assert_eq!(engine, "podman");
                assert_eq!(message, "`tool tag a b` failed: Error: a went wrong");
            }
            other => panic!("{other:?}"),
        }
        let cli = tool("echo 'Error: No Daemon at the socket' >&2; exit 125");
        match engine_cli(&cli).query(&["tag", "a", "b"]) {
            Err(Error::EngineUnavailable {
                endpoint, message, ..
            }) => {
                assert_eq!(endpoint, "the endpoint");
                assert!(
                    message.starts_with("Error: No Daemon at the socket; "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A ping that fails is "unavailable" whatever the tool says.
        let cli = tool("echo 'something else' >&2; exit 1");
        assert!(matches!(
            engine_cli(&cli).ping(&["version"]),
            Err(Error::EngineUnavailable { .. })
        ));
        let cli = Cli::new("/nonexistent/imgcache-no-such-tool");
        match engine_cli(&cli).ping(&["version"]) {
            Err(e @ Error::EngineUnavailable { .. }) => {
                assert!(e.to_string().contains("is not installed"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn engine_cli_inspect() {
        let cli = tool(
            r#"case "$3" in
              one) echo '[{"Id":"x1","RepoTags":["a:1"]},{"Id":"x2"}]' ;;
              empty) echo '[]' ;;
              junk) echo 'not json' ;;
              *) echo "Error: $3: image not known" >&2; exit 125 ;;
            esac"#,
        );
        let e = engine_cli(&cli);
        let not_found = ["image not known"];
        let first = e
            .inspect(&["image", "inspect"], "one", &not_found)
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.id.as_str(), first.repo_tags),
            ("x1", Some(vec!["a:1".to_owned()]))
        );
        assert!(
            e.inspect(&["image", "inspect"], "empty", &not_found)
                .unwrap()
                .is_none()
        );
        assert!(
            e.inspect(&["image", "inspect"], "other", &not_found)
                .unwrap()
                .is_none()
        );
        match e.inspect(&["image", "inspect"], "junk", &not_found) {
            Err(Error::Engine { message, .. }) => assert!(
                message.starts_with("`tool image inspect` printed unexpected JSON: "),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        // Without its words for "not found", a missing image is a failure.
        match e.inspect(&["image", "inspect"], "other", &[]) {
            Err(Error::Engine { message, .. }) => assert_eq!(
                message,
                "`tool image inspect other` failed: Error: other: image not known"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tail_waits_for_the_producer() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = HoldBack::new(Vec::new());
        for chunk in data[..1000].chunks(7) {
            w.write_all(chunk).unwrap();
        }
        w.write_all(&data[1000..200_000]).unwrap();
        for chunk in data[200_000..].chunks(8192) {
            w.write_all(chunk).unwrap();
        }
        w.flush().unwrap();
        let sent = w.inner.len();
        assert!(sent <= data.len() - HOLD_BACK, "{sent}");
        assert!(sent >= data.len() - 2 * HOLD_BACK, "{sent}");
        assert_eq!(w.inner, data[..sent]);
        w.release().unwrap();
        assert_eq!(w.inner, data);

        // A short stream: nothing before the release.
        let mut w = HoldBack::new(Vec::new());
        w.write_all(&data[..HOLD_BACK - 1]).unwrap();
        w.flush().unwrap();
        assert!(w.inner.is_empty());
        w.release().unwrap();
        assert_eq!(w.inner, data[..HOLD_BACK - 1]);
    }

    /// An engine that acts on the end of the archive, not on the end of its input, never sees
    /// that end when the producer fails after its last byte.
    #[test]
    fn producer_failing_after_its_last_byte_loads_nothing() {
        let (cli, a) = sh("head -c 100000 >/dev/null && echo loaded >&2; cat >/dev/null");
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            w.write_all(&[1u8; 100_000])
                .map_err(|e| Error::io("x", e))?;
            w.flush().map_err(|e| Error::io("x", e))?;
            thread::sleep(Duration::from_millis(500));
            Err(Error::NotFound {
                path: "digest checked at the end".into(),
            })
        };
        match cli.run_with_stdin(&args(&a), &mut produce) {
            Err(RunError::Input(Error::NotFound { .. })) => {}
            other => panic!("{other:?}"),
        }
        // The same engine, a producer that succeeds: it got every byte.
        let (cli, a) = sh("head -c 100000 >/dev/null && echo loaded >&2; cat >/dev/null");
        let out = cli
            .run_with_stdin(&args(&a), &mut |w: &mut dyn Write| {
                w.write_all(&[1u8; 100_000]).map_err(|e| Error::io("x", e))
            })
            .unwrap();
        assert_eq!(out.message(), "loaded");
    }

    #[test]
    fn failing_producer_kills_the_engine_before_eof() {
        // The engine would "succeed" on EOF; it must be killed instead.
        let (cli, a) = sh("cat >/dev/null; echo loaded");
        let mut produce = |w: &mut dyn Write| -> Result<(), Error> {
            w.write_all(b"partial").map_err(|e| Error::io("x", e))?;
            Err(Error::NotFound {
                path: "blob".into(),
            })
        };
        match cli.run_with_stdin(&args(&a), &mut produce) {
            Err(RunError::Input(Error::NotFound { .. })) => {}
            other => panic!("{other:?}"),
        }
    }
}
