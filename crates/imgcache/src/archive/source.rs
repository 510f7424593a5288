//! The bytes of an archive file: read in place when plain, streamed when compressed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::tar::{BlockSource, TarEntry, TarIndex, WalkError};
use crate::compression::Compression;
use crate::error::{Error, Problem};

/// Entries up to this size are kept while streaming a compressed archive, so reading the
/// manifests and configs afterwards needs no second decompression pass.
const PREFETCH_ENTRY_MAX: u64 = 8 * 1024 * 1024;
const PREFETCH_TOTAL_MAX: u64 = 32 * 1024 * 1024;
/// How many leading bytes of every larger entry are kept (enough to detect compression and
/// check the first tar header of a layer).
pub(crate) const PREFIX_LEN: u64 = 512;

pub(crate) struct Source {
    pub path: PathBuf,
    file: File,
    len: u64,
    /// Compression of the whole archive (not of its layers).
    pub outer: Compression,
    bytes_read: Arc<AtomicU64>,
    /// For compressed archives: data of small entries and prefixes of large ones, by offset.
    prefetched: HashMap<u64, Vec<u8>>,
}

impl Source {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path: path.into() },
            _ => Error::io(path, e),
        })?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::archive(
                path,
                Problem::new(
                    crate::error::Check::NotAnArchive,
                    "is a directory with no files to verify",
                ),
            ));
        }
        let mut magic = [0u8; 6];
        let n = file
            .read_at(&mut magic, 0)
            .map_err(|e| Error::io(path, e))?;
        let source = Self {
            path: path.into(),
            file,
            len: meta.len(),
            outer: Compression::detect(&magic[..n]),
            bytes_read: Arc::default(),
            prefetched: HashMap::new(),
        };
        source.count(n as u64);
        Ok(source)
    }

    fn count(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes read from the file so far, by every reader of this source.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    pub fn is_plain(&self) -> bool {
        self.outer == Compression::None
    }

    /// Reads the tar headers (and, for a compressed archive, prefetches small entries).
    pub fn walk(&mut self) -> Result<TarIndex, Error> {
        let result = if self.is_plain() {
            let mut blocks = FileBlocks {
                source: self,
                pos: 0,
            };
            TarIndex::walk(&mut blocks)
        } else {
            let mut prefetched = HashMap::new();
            let mut total = 0u64;
            let r = {
                let mut stream = self.stream()?;
                TarIndex::walk_with(
                    &mut stream,
                    |entry: &TarEntry, src: &mut dyn BlockSource| {
                        let want = if entry.size <= PREFETCH_ENTRY_MAX
                            && total + entry.size <= PREFETCH_TOTAL_MAX
                        {
                            entry.size
                        } else {
                            entry.size.min(PREFIX_LEN)
                        };
                        let mut buf = vec![0u8; want as usize];
                        let got = src.read_up_to(&mut buf)?;
                        buf.truncate(got);
                        total += got as u64;
                        prefetched.insert(entry.offset, buf);
                        Ok(got as u64)
                    },
                )
            };
            self.prefetched = prefetched;
            r
        };
        result.map_err(|e| match e {
            WalkError::Io(e) => self.stream_error(e),
            WalkError::Bad(p) => Error::archive(&self.path, p),
        })
    }

    /// Decompression errors mean a corrupt archive, not a failing disk.
    fn stream_error(&self, e: io::Error) -> Error {
        if self.is_plain()
            || e.kind() == io::ErrorKind::NotFound
            || e.kind() == io::ErrorKind::PermissionDenied
        {
            return Error::io(&self.path, e);
        }
        // The decoders report a stream cut short as UnexpectedEof or, for deflate, as an
        // "incomplete" stream of another kind: both mean a truncated file, not a foreign one.
        let text = e.to_string();
        let cut = e.kind() == io::ErrorKind::UnexpectedEof
            || text.contains("incomplete")
            || text.contains("unexpected end");
        let (check, what) = if cut {
            (
                crate::error::Check::Truncated,
                "ends before its compressed stream does (truncated)",
            )
        } else {
            (crate::error::Check::NotAnArchive, "cannot be decompressed")
        };
        Error::archive(
            &self.path,
            Problem::new(
                check,
                format!("the {:?}-compressed archive {what}: {e}", self.outer),
            ),
        )
    }

    fn stream(&self) -> Result<StreamBlocks<'_>, Error> {
        let raw = CountingReader {
            file: &self.file,
            pos: 0,
            counter: &self.bytes_read,
        };
        let inner = self.outer.decoder(raw).map_err(|e| self.stream_error(e))?;
        Ok(StreamBlocks { inner })
    }

    /// Reads `len` bytes at `offset` of the (decompressed) archive.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        if let Some(data) = self.prefetched.get(&offset)
            && data.len() as u64 >= len
        {
            return Ok(data[..len as usize].to_vec());
        }
        let mut out = vec![0u8; len as usize];
        self.with_range(offset, len, |r| r.read_exact(&mut out))?;
        Ok(out)
    }

    /// Calls `f` with a reader over `len` bytes at `offset`. Plain files are read in place;
    /// a compressed archive is decompressed from its start (callers batch with
    /// [`for_each_range`](Self::for_each_range) to avoid that).
    pub fn with_range<T>(
        &self,
        offset: u64,
        len: u64,
        f: impl FnOnce(&mut dyn Read) -> io::Result<T>,
    ) -> Result<T, Error> {
        if self.is_plain() {
            let mut r = self.range_reader(offset, len);
            return f(&mut r).map_err(|e| Error::io(&self.path, e));
        }
        let mut stream = self.stream()?;
        let got = stream.skip(offset).map_err(|e| self.stream_error(e))?;
        if got < offset {
            return Err(self.stream_error(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut take = (&mut stream.inner).take(len);
        f(&mut take).map_err(|e| self.stream_error(e))
    }

    /// A reader over a range of a plain file, reading in place (safe to use from many threads).
    pub fn range_reader(&self, offset: u64, len: u64) -> RangeReader<'_> {
        RangeReader {
            file: &self.file,
            pos: offset,
            end: offset + len,
            counter: &self.bytes_read,
        }
    }

    /// Streams a compressed archive once, calling `f(i, reader)` for each range in offset order.
    /// `ranges` must be sorted by offset and not overlap.
    pub fn for_each_range(
        &self,
        ranges: &[(u64, u64)],
        mut f: impl FnMut(usize, &mut dyn Read) -> io::Result<()>,
    ) -> Result<(), Error> {
        let mut stream = self.stream()?;
        let mut pos = 0u64;
        for (i, &(offset, len)) in ranges.iter().enumerate() {
            let gap = offset - pos;
            if stream.skip(gap).map_err(|e| self.stream_error(e))? < gap {
                return Err(self.stream_error(io::ErrorKind::UnexpectedEof.into()));
            }
            let mut take = (&mut stream.inner).take(len);
            f(i, &mut take).map_err(|e| self.stream_error(e))?;
            // Whatever `f` left unread still belongs to this range.
            io::copy(&mut take, &mut io::sink()).map_err(|e| self.stream_error(e))?;
            pos = offset + len;
        }
        Ok(())
    }
}

pub(crate) struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    counter: &'a AtomicU64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ends at offset {} (it changed while being read?)",
                    self.pos
                ),
            ));
        }
        self.pos += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct CountingReader<'a> {
    file: &'a File,
    pos: u64,
    counter: &'a AtomicU64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Tar blocks of a plain file: headers are read in place, data is seeked over.
struct FileBlocks<'a> {
    source: &'a Source,
    pos: u64,
}

impl BlockSource for FileBlocks<'_> {
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.source.file.read_at(&mut buf[done..], self.pos)?;
            if n == 0 {
                break;
            }
            done += n;
            self.pos += n as u64;
        }
        self.source.count(done as u64);
        Ok(done)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let available = self.source.len.saturating_sub(self.pos).min(n);
        self.pos += available;
        Ok(available)
    }

    fn total_len(&self) -> Option<u64> {
        Some(self.source.len)
    }
}

/// Tar blocks of a decompressed stream: skipping means reading and discarding.
struct StreamBlocks<'a> {
    inner: Box<dyn Read + 'a>,
}

impl BlockSource for StreamBlocks<'_> {
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
    }

    fn total_len(&self) -> Option<u64> {
        None
    }
}
