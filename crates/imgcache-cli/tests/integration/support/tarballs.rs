//! Tarballs held in memory (read, edited, written again), and gzip.

use std::fs;
use std::io::Read;
use std::path::Path;

/// One entry of a tarball, held in memory (fixtures are small).
#[derive(Clone)]
pub struct Entry {
    pub header: tar::Header,
    pub name: String,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        Entry {
            header,
            name: name.to_owned(),
            data: data.to_vec(),
        }
    }

    pub fn symlink(name: &str, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_link_name(target).unwrap();
        Entry {
            header,
            name: name.to_owned(),
            data: Vec::new(),
        }
    }
}

/// Reads every entry of a (small, plain) tarball.
pub fn read_tar(path: &Path) -> Vec<Entry> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Entry {
                header: e.header().clone(),
                name,
                data,
            }
        })
        .collect()
}

/// Writes entries as a tarball (names through GNU long-name records when needed).
pub fn write_tar(path: &Path, entries: &[Entry]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for e in entries {
        let mut h = e.header.clone();
        h.set_size(e.data.len() as u64);
        if h.entry_type().is_symlink() || h.entry_type().is_hard_link() {
            let target = h.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &e.name, target).unwrap();
        } else {
            b.append_data(&mut h, &e.name, &e.data[..]).unwrap();
        }
    }
    b.finish().unwrap();
}

/// The entry named `name`.
pub fn entry<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

/// The entry named `name`, to change it.
pub fn entry_mut<'a>(entries: &'a mut [Entry], name: &str) -> &'a mut Entry {
    entries
        .iter_mut()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}
