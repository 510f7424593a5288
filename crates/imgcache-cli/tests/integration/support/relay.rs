//! A unix-socket relay in front of an engine's API socket that counts the bytes clients send
//! through it: what an engine was actually given, seen from outside imgcache.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

/// Listens at `path` and relays every connection to `upstream`, counting client-to-engine
/// bytes. Stopped (and its socket removed) when dropped.
pub struct UnixRelay {
    path: PathBuf,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl UnixRelay {
    pub fn start(path: &Path, upstream: &Path) -> Self {
        let listener = UnixListener::bind(path).expect("bind the relay socket");
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, up) = (sent.clone(), stop.clone(), upstream.to_path_buf());
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = UnixStream::connect(&up) else {
                    continue;
                };
                let counted = s.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pipe(client, server, Some(&counted)));
                thread::spawn(move || pipe(s2, c2, None));
            }
        });
        Self {
            path: path.into(),
            sent,
            stop,
            accept: Some(accept),
        }
    }

    /// `unix://` URL of the relay, for `DOCKER_HOST`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Bytes clients have sent to the engine so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until `from` ends, adding to `count`; then half-closes `to`.
fn pipe(mut from: UnixStream, mut to: UnixStream, count: Option<&AtomicU64>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(c) = count {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for UnixRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
