//! Layer and archive compression, detected by magic bytes (never by file name).

use std::io::{self, BufReader, Read};

use serde::Serialize;

/// How a blob or archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

/// zstd frames may ask for a window up to 2 GiB; the decoder allocates it. Capping the window
/// keeps memory bounded whatever the input: 2^24 = 16 MiB covers every level up to 19 and
/// `--long` windows up to 16 MiB. Larger windows fail with a clear error instead.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

impl Compression {
    /// Detects compression from the first bytes of a stream.
    pub fn detect(prefix: &[u8]) -> Self {
        match prefix {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Self::Xz,
            [b'B', b'Z', b'h', ..] => Self::Bzip2,
            _ => Self::None,
        }
    }

    /// The decompressed size a stream of `len` bytes declares of itself, read with at most two
    /// small reads: gzip's trailer (ISIZE: the last member's size modulo 4 GiB) or a zstd
    /// frame's content size (the first frame's, when the encoder wrote it); an uncompressed
    /// stream is its own size. A hint only, for a tar header that must precede the data:
    /// whoever streams the decompressed bytes checks that they come to exactly this.
    pub fn declared_size(self, file: &std::fs::File, len: u64) -> io::Result<Option<u64>> {
        use std::os::unix::fs::FileExt;
        Ok(match self {
            Self::None => Some(len),
            Self::Gzip if len >= 18 => {
                let mut isize = [0u8; 4];
                file.read_exact_at(&mut isize, len - 4)?;
                Some(u64::from(u32::from_le_bytes(isize)))
            }
            Self::Zstd => {
                // A frame header is at most 18 bytes.
                let mut head = [0u8; 18];
                let n = usize::try_from(len.min(18)).unwrap_or(18);
                file.read_exact_at(&mut head[..n], 0)?;
                zstd::zstd_safe::get_frame_content_size(&head[..n])
                    .ok()
                    .flatten()
            }
            _ => None,
        })
    }

    /// Wraps `reader` in the matching decoder. Multi-member gzip is read to its end.
    pub fn decoder<'a>(self, reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        const BUF: usize = 256 * 1024;
        Ok(match self {
            Self::None => Box::new(reader),
            Self::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(BUF, reader),
            )),
            Self::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                    BUF, reader,
                ))?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(d)
            }
            Self::Xz | Self::Bzip2 => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{self:?} compression is not supported (only gzip and zstd)"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_by_magic_and_decodes_multi_member_gzip() {
        let mut data = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            data.extend(e.finish().unwrap());
        }
        assert_eq!(Compression::detect(&data), Compression::Gzip);
        let mut out = String::new();
        Compression::Gzip
            .decoder(&data[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
        let z = zstd::encode_all(&b"abc"[..], 3).unwrap();
        assert_eq!(Compression::detect(&z), Compression::Zstd);
        assert_eq!(Compression::detect(b"plain tar"), Compression::None);
    }

    #[test]
    fn declared_sizes_of_gzip_zstd_and_plain_streams() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let cases = [
            (Compression::Gzip, gz.finish().unwrap(), Some(100_000)),
            (
                Compression::Zstd,
                zstd::bulk::compress(&data, 3).unwrap(),
                Some(100_000),
            ),
            // Streamed without a pledged size: no content size in the frame.
            (
                Compression::Zstd,
                zstd::encode_all(&data[..], 3).unwrap(),
                None,
            ),
            (Compression::None, data.clone(), Some(100_000)),
            (Compression::Gzip, vec![0x1f, 0x8b, 8], None),
        ];
        for (c, bytes, want) in cases {
            let path = dir.path().join("blob");
            std::fs::write(&path, &bytes).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            assert_eq!(
                c.declared_size(&f, bytes.len() as u64).unwrap(),
                want,
                "{c:?}"
            );
        }
    }
}
