//! A size-limited tmpfs, mounted for a test (root only) and unmounted when dropped: a full disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::output_of;

/// A tmpfs mounted at a directory, unmounted when dropped (declare it after the [`Sandbox`]
/// holding the directory, so that it is dropped first).
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        output_of(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
                .arg("tmpfs")
                .arg(dir),
        )
        .ok(&format!(
            "mount -t tmpfs at {} (the disk-full tests need root)",
            dir.display()
        ));
        Self { dir: dir.into() }
    }

    pub fn resize(&self, size: &str) {
        output_of(
            Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.dir),
        )
        .ok("remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
