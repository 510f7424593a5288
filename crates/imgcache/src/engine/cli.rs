//! Running an engine's command-line tool: bounded output, a deadline, and stdin streamed from a
//! producer (so a multi-gigabyte tarball never sits in memory or in a temporary file of ours).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

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
        let readers = Readers {
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
            let mut w = PipeWriter {
                inner: stdin,
                broken: false,
            };
            let result = produce(&mut w)
                .and_then(|()| w.flush().map_err(|e| Error::io("<engine stdin>", e)));
            if let Err(e) = result {
                if !w.broken {
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
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(25));
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
}

impl Reader {
    fn take(self, deadline: Instant) -> Vec<u8> {
        let _ = self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
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
    Reader { kept, done }
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
