//! An engine out of disk: a private dockerd 20.10 whose data root is a small tmpfs. The load
//! fails with exit 3, a message naming the engine and the cause, and the cache unchanged; once
//! there is room, the next load succeeds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A private dockerd (`scripts/testenv/start-dockerd.sh DIR vfs`) with its data root on a
/// tmpfs, stopped (by its PID files) and unmounted when dropped.
struct SmallDockerd {
    dir: PathBuf,
    data: Tmpfs,
}

impl SmallDockerd {
    fn start(dir: &Path, size: &str) -> Self {
        // Mounted before the daemon starts, so everything it writes lands on the small disk.
        let data = Tmpfs::mount(&dir.join("data"), size);
        let started = output_of(
            Command::new(testenv_script("start-dockerd.sh"))
                .arg(dir)
                .arg("vfs"),
        );
        let d = Self {
            dir: dir.into(),
            data,
        };
        started.ok("start-dockerd.sh on a small data root");
        d
    }

    fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    fn docker(&self, args: &[&str]) -> Run {
        docker_at(&self.host(), args)
    }
}

impl Drop for SmallDockerd {
    fn drop(&mut self) {
        let stop = |pidfile: &str, timeout: &str, pattern: String| {
            let _ = Command::new(testenv_script("stop-pidfile.sh"))
                .arg(self.dir.join(pidfile))
                .arg(timeout)
                .arg(pattern)
                .status();
        };
        stop(
            "dockerd.pid",
            "30",
            format!("--data-root {}", self.data.dir.display()),
        );
        stop(
            "containerd/containerd.pid",
            "20",
            self.dir
                .join("containerd/config.toml")
                .display()
                .to_string(),
        );
        // `data` is unmounted after this, once the daemon is gone.
    }
}

#[test]
fn a_load_into_an_engine_out_of_disk_exits_3_naming_the_cause_and_succeeds_once_there_is_room() {
    let c = Sandbox::new();
    let dockerd = SmallDockerd::start(&c.path("dockerd"), "12m");
    // Two incompressible 8 MiB layers: on vfs the second layer is a full copy of the first
    // plus itself, and `docker load` keeps a copy of the archive too: far over 12 MiB.
    let p = fresh_image("enginedisk", &[8 << 20, 8 << 20]);
    c.pull(&p.reference);
    let before = c.snapshot();
    let env = [("DOCKER_HOST".to_owned(), dockerd.host())];
    let args = ["load", p.reference.as_str(), "--engine", "docker"];

    let full = c.run_with_env(&env, &args);
    assert_eq!(full.code, 3, "{}\n{}", full.stdout, full.stderr);
    assert!(
        full.stderr.contains("docker") && full.stderr.contains("no space left on device"),
        "the engine and the cause are not named:\n{}",
        full.stderr
    );
    let doc = c.json_with_env(&env, &args, 3);
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["error"]["check"], "environment", "{doc:#}");
    assert_eq!(c.snapshot(), before, "the failed load changed the cache");
    let listed = dockerd.docker(&["images", "--no-trunc", "--format", "{{.ID}}"]);
    assert!(
        !listed.ok("docker images").stdout.contains(&p.config_digest),
        "the engine holds the image after a failed load"
    );

    dockerd.data.resize("256m");
    let doc = c.json_with_env(&env, &args, 0);
    assert_eq!(doc["action"], "loaded", "{doc:#}");
    assert_eq!(doc["image_id"], p.config_digest.as_str(), "{doc:#}");
    let inspected = dockerd.docker(&["image", "inspect", "--format", "{{.Id}}", &p.reference]);
    assert_eq!(
        inspected.ok("docker image inspect").stdout.trim(),
        p.config_digest
    );
    assert_eq!(c.snapshot().1, before.1, "the blobs changed");
    c.assert_fsck_deep_spotless();
}
