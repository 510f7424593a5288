//! `imgcache serve` as a child process: started on a free loopback port, stopped by its PID.

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use super::Sandbox;

/// A running `imgcache serve` of a sandbox's cache. Dropping it kills the process.
pub struct Serving {
    child: Option<Child>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// What the server wrote on stderr, collected by a thread until it exits.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Serving {
    /// `imgcache --root ROOT serve --listen 127.0.0.1:0 EXTRA...`, once it printed its line.
    pub fn start(sb: &Sandbox, extra: &[&str]) -> Self {
        Self::start_with_env(sb, extra, &[])
    }

    pub fn start_with_env(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut cmd = sb.command(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn imgcache serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr =
            std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            tx.send(first).ok();
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        // A liveness guard (the process died or hangs before listening), not a speed limit.
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                child.kill().ok();
                panic!("imgcache serve printed {line:?} instead of `listening on URL`")
            })
            .to_owned();
        let addr = url.split_once("://").map(|(_, a)| a.to_owned()).unwrap();
        Self {
            child: Some(child),
            addr,
            url,
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits: the exit status and everything written on stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}
