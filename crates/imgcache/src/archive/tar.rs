//! A bounded walk over the headers of an image archive.
//!
//! Written by hand on top of `tar::Header` because the `tar` crate's entry iterator reads GNU
//! long-name and PAX extension bodies into memory whatever size their header claims, and gives
//! no way to refuse device nodes, escaping names or links before they are seen. Here every
//! extension body is capped, every name and link is checked as it is read, and data is never
//! read: the walk only seeks (or, in a compressed stream, skips) over it.

use std::collections::HashMap;
use std::io;

use crate::error::{Check, Problem};

const BLOCK: u64 = 512;
/// Cap on one PAX or GNU long-name body.
const MAX_EXTENSION: u64 = 1024 * 1024;
/// Caps on the index size, so a hostile archive cannot grow it without end.
const MAX_ENTRIES: usize = 100_000;
const MAX_NAME_BYTES: usize = 16 * 1024 * 1024;
/// How many links one lookup may follow before it is called a loop.
const MAX_LINK_HOPS: usize = 32;

/// A source of tar blocks: a seekable file or a decompressed stream.
pub(crate) trait BlockSource {
    /// Reads into `buf` from the current position; returns how many bytes were read
    /// (less than `buf.len()` only at the end of the input).
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Moves forward `n` bytes; returns how many were available (less at the end).
    fn skip(&mut self, n: u64) -> io::Result<u64>;
    /// Total length when known (plain files), for truncation checks without reading.
    fn total_len(&self) -> Option<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

/// One entry of the archive, its name normalized (no `./`, no trailing `/`).
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub name: String,
    pub kind: EntryKind,
    /// Offset of the entry's data in the (decompressed) archive.
    pub offset: u64,
    pub size: u64,
    /// For links: the target as a normalized name inside the archive.
    pub link: Option<String>,
}

/// The archive's entries, by name.
#[derive(Debug, Default)]
pub(crate) struct TarIndex {
    pub entries: Vec<TarEntry>,
    by_name: HashMap<String, usize>,
    /// False when the input ended without the two zero blocks that close a tar archive.
    pub closed: bool,
}

pub(crate) enum WalkError {
    Io(io::Error),
    Bad(Problem),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

fn bad(check: Check, message: String) -> WalkError {
    WalkError::Bad(Problem::new(check, message))
}

impl TarIndex {
    /// Walks every header of `src`. The result has no duplicate names, no unsafe names or
    /// links, and every entry's data lies within the input.
    pub fn walk(src: &mut dyn BlockSource) -> Result<Self, WalkError> {
        Self::walk_with(src, |_, _| Ok(0))
    }

    /// Like [`walk`](Self::walk), calling `on_entry` for each regular file while the source is
    /// positioned at its data (used to prefetch small entries from a compressed stream). The
    /// callback returns how many data bytes it consumed.
    pub fn walk_with(
        src: &mut dyn BlockSource,
        mut on_entry: impl FnMut(&TarEntry, &mut dyn BlockSource) -> io::Result<u64>,
    ) -> Result<Self, WalkError> {
        let mut index = TarIndex::default();
        let mut pos = 0u64;
        let mut name_bytes = 0usize;
        let mut pending = Extensions::default();
        let mut header_buf = [0u8; 512];
        loop {
            let n = src.read_up_to(&mut header_buf)?;
            if n == 0 {
                if pos == 0 {
                    return Err(bad(Check::NotAnArchive, "the file is empty".into()));
                }
                break; // ended on a block boundary without the closing zero blocks
            }
            if n < header_buf.len() && pos == 0 {
                return Err(bad(
                    Check::NotAnArchive,
                    format!("not a tar archive (only {n} bytes, less than one tar header)"),
                ));
            }
            if n < header_buf.len() {
                return Err(bad(
                    Check::Truncated,
                    format!(
                        "the archive ends inside the tar header at offset {pos} (only {n} of 512 bytes)"
                    ),
                ));
            }
            if header_buf.iter().all(|&b| b == 0) {
                index.closed = true;
                break;
            }
            let header = tar::Header::from_byte_slice(&header_buf);
            if !checksum_ok(&header_buf) {
                let message = if pos == 0 {
                    "not a tar archive (no valid tar header at offset 0)".to_string()
                } else {
                    format!("corrupt tar header at offset {pos} (checksum mismatch)")
                };
                let check = if pos == 0 {
                    Check::NotAnArchive
                } else {
                    Check::Truncated
                };
                return Err(bad(check, message));
            }
            let data_offset = pos + BLOCK;
            let mut size = header.entry_size().map_err(|_| {
                bad(
                    Check::UnsafeEntry,
                    format!("unreadable size in the tar header at offset {pos}"),
                )
            })?;
            let is_extension = matches!(header.entry_type().as_byte(), b'x' | b'g' | b'L' | b'K');
            if !is_extension && let Some(s) = pending.size {
                size = s;
            }
            let padded = size
                .checked_add(BLOCK - 1)
                .map(|s| s & !(BLOCK - 1))
                .and_then(|s| s.checked_add(data_offset))
                .ok_or_else(|| {
                    bad(
                        Check::UnsafeEntry,
                        format!("impossible entry size {size} at offset {pos}"),
                    )
                })?;
            let type_byte = header.entry_type().as_byte();

            if is_extension {
                if size > MAX_EXTENSION {
                    return Err(bad(
                        Check::TooLarge,
                        format!(
                            "tar extension header at offset {pos} declares {size} bytes (limit {MAX_EXTENSION})"
                        ),
                    ));
                }
                let mut body = vec![0u8; size as usize];
                let got = src.read_up_to(&mut body)?;
                if got < body.len() {
                    return Err(truncated_entry(
                        "a tar extension header",
                        data_offset,
                        size,
                        data_offset + got as u64,
                    ));
                }
                skip_exact(src, padded - data_offset - size, padded)?;
                pos = padded;
                match type_byte {
                    b'x' => pending.pax(&body, pos)?,
                    b'L' => pending.long_name = Some(trim_nul(body)),
                    b'K' => pending.long_link = Some(trim_nul(body)),
                    _ => {} // global PAX headers carry nothing an image archive needs
                }
                continue;
            }

            let ext = std::mem::take(&mut pending);
            let raw_name = ext
                .long_name
                .or(ext.pax_path)
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let name = entry_name(&raw_name, pos)?;
            let kind = match type_byte {
                b'0' | b'\0' | b'7' => EntryKind::File,
                b'5' => EntryKind::Dir,
                b'2' => EntryKind::Symlink,
                b'1' => EntryKind::Hardlink,
                b'3' | b'4' => return Err(unsafe_entry(&name, "is a device node")),
                b'6' => return Err(unsafe_entry(&name, "is a named pipe")),
                b'S' => return Err(unsafe_entry(&name, "is a GNU sparse file")),
                other => {
                    return Err(unsafe_entry(
                        &name,
                        &format!("has unsupported tar entry type {:?}", other as char),
                    ));
                }
            };
            let link = match kind {
                EntryKind::Symlink | EntryKind::Hardlink => {
                    let raw = ext
                        .long_link
                        .or(ext.pax_link)
                        .or_else(|| header.link_name_bytes().map(|c| c.into_owned()))
                        .unwrap_or_default();
                    Some(link_target(&name, kind, &raw)?)
                }
                _ => None,
            };
            // Link and directory sizes carry no data that matters; regular files must fit.
            if let Some(len) = src.total_len()
                && data_offset.saturating_add(size) > len
            {
                return Err(truncated_entry(
                    &format!("entry {name:?}"),
                    data_offset,
                    size,
                    len,
                ));
            }
            let entry = TarEntry {
                name,
                kind,
                offset: data_offset,
                size,
                link,
            };
            let consumed = if kind == EntryKind::File {
                on_entry(&entry, src)?
            } else {
                0
            };
            let rest = padded - data_offset - consumed;
            let skipped = src.skip(rest)?;
            if skipped < rest {
                return Err(truncated_entry(
                    &format!("entry {:?}", entry.name),
                    data_offset,
                    size,
                    data_offset + consumed + skipped,
                ));
            }
            pos = padded;
            index.insert(entry, &mut name_bytes)?;
        }
        index.check_links()?;
        Ok(index)
    }

    fn insert(&mut self, entry: TarEntry, name_bytes: &mut usize) -> Result<(), WalkError> {
        if entry.name.is_empty() {
            return Ok(()); // the archive root "./"
        }
        *name_bytes += entry.name.len() + entry.link.as_ref().map_or(0, String::len);
        if self.entries.len() >= MAX_ENTRIES || *name_bytes > MAX_NAME_BYTES {
            return Err(bad(
                Check::TooLarge,
                format!(
                    "more than {MAX_ENTRIES} entries or {MAX_NAME_BYTES} bytes of names: not an image archive"
                ),
            ));
        }
        if let Some(&i) = self.by_name.get(&entry.name) {
            if self.entries[i].kind == EntryKind::Dir && entry.kind == EntryKind::Dir {
                return Ok(());
            }
            return Err(WalkError::Bad(
                Problem::new(
                    Check::DuplicateEntry,
                    format!(
                        "entry {:?} appears twice (at offsets {} and {}): engines disagree on which copy wins",
                        entry.name, self.entries[i].offset, entry.offset
                    ),
                )
                .entry(entry.name.clone()),
            ));
        }
        self.by_name.insert(entry.name.clone(), self.entries.len());
        self.entries.push(entry);
        Ok(())
    }

    /// Rejects link chains that loop; dangling links are reported only when used.
    fn check_links(&self) -> Result<(), WalkError> {
        for e in self.entries.iter().filter(|e| e.link.is_some()) {
            if let Err(LookupError::Loop) = self.resolve(&e.name) {
                return Err(WalkError::Bad(
                    Problem::new(
                        Check::UnsafeEntry,
                        format!("link {:?} is part of a link loop", e.name),
                    )
                    .entry(e.name.clone()),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TarEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Follows symlinks and hardlinks from `name` to a regular file.
    pub fn resolve(&self, name: &str) -> Result<&TarEntry, LookupError> {
        let mut current = name;
        for _ in 0..MAX_LINK_HOPS {
            let e = self.get(current).ok_or(LookupError::Missing)?;
            match e.kind {
                EntryKind::File => return Ok(e),
                EntryKind::Dir => return Err(LookupError::NotAFile),
                EntryKind::Symlink | EntryKind::Hardlink => {
                    current = e.link.as_deref().ok_or(LookupError::Missing)?;
                }
            }
        }
        Err(LookupError::Loop)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LookupError {
    Missing,
    NotAFile,
    Loop,
}

#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    size: Option<u64>,
}

impl Extensions {
    fn pax(&mut self, body: &[u8], pos: u64) -> Result<(), WalkError> {
        for ext in tar::PaxExtensions::new(body) {
            let ext = ext.map_err(|_| {
                bad(
                    Check::UnsafeEntry,
                    format!("malformed PAX header before offset {pos}"),
                )
            })?;
            match ext.key_bytes() {
                b"path" => self.pax_path = Some(ext.value_bytes().to_vec()),
                b"linkpath" => self.pax_link = Some(ext.value_bytes().to_vec()),
                b"size" => {
                    let size = ext
                        .value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| {
                            bad(
                                Check::UnsafeEntry,
                                format!("malformed PAX size before offset {pos}"),
                            )
                        })?;
                    self.size = Some(size);
                }
                _ => {} // mtime, uid, xattrs...: nothing an image archive's outer layer needs
            }
        }
        Ok(())
    }
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

pub(crate) fn checksum_ok(block: &[u8; 512]) -> bool {
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    tar::Header::from_byte_slice(block)
        .cksum()
        .is_ok_and(|c| c == sum)
}

fn skip_exact(src: &mut dyn BlockSource, n: u64, end: u64) -> Result<(), WalkError> {
    let got = src.skip(n)?;
    if got < n {
        return Err(bad(
            Check::Truncated,
            format!("the archive ends before offset {end}"),
        ));
    }
    Ok(())
}

fn truncated_entry(what: &str, offset: u64, size: u64, end: u64) -> WalkError {
    bad(
        Check::Truncated,
        format!("{what} declares {size} bytes at offset {offset}, but the archive ends at {end}"),
    )
}

fn unsafe_entry(name: &str, what: &str) -> WalkError {
    WalkError::Bad(
        Problem::new(
            Check::UnsafeEntry,
            format!("entry {name:?} {what}; refusing the archive"),
        )
        .entry(name),
    )
}

/// Validates and normalizes an entry name: UTF-8, relative, no `..`.
fn entry_name(raw: &[u8], pos: u64) -> Result<String, WalkError> {
    let text = std::str::from_utf8(raw).map_err(|_| {
        bad(
            Check::UnsafeEntry,
            format!(
                "entry name at offset {pos} is not UTF-8 ({:?}); refusing the archive",
                String::from_utf8_lossy(raw)
            ),
        )
    })?;
    if text.starts_with('/') {
        return Err(unsafe_entry(text, "has an absolute name"));
    }
    if text.contains('\0') {
        return Err(unsafe_entry(text, "has a NUL byte in its name"));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_entry(text, "has a \"..\" component")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a link target to a normalized name inside the archive, or refuses the archive.
fn link_target(name: &str, kind: EntryKind, raw: &[u8]) -> Result<String, WalkError> {
    let target =
        std::str::from_utf8(raw).map_err(|_| unsafe_entry(name, "has a non-UTF-8 link target"))?;
    if target.starts_with('/') {
        return Err(unsafe_entry(
            name,
            &format!("links to the absolute path {target:?}"),
        ));
    }
    // Symlinks are relative to the link's directory; hardlink targets to the archive root.
    let mut parts: Vec<&str> = match kind {
        EntryKind::Symlink => {
            let mut p: Vec<&str> = name.split('/').collect();
            p.pop();
            p
        }
        _ => Vec::new(),
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(unsafe_entry(
                        name,
                        &format!("links outside the archive ({target:?})"),
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}
