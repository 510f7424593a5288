//! The plain registry's log: what it was asked for and what it sent, when.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use super::{env, nanos};

/// One response the registry logged (`msg="response completed"`).
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub uri: String,
    pub status: u16,
    pub written: u64,
    /// Unix nanoseconds: when the response ended, minus its duration.
    pub start_ns: i128,
    pub end_ns: i128,
}

/// The plain registry's log from the moment of [`RegistryLog::mark`] on: its access-log lines
/// and its `response completed` records.
pub struct RegistryLog {
    path: PathBuf,
    start: u64,
    /// Unix nanoseconds at the mark: responses that started before (an aborted download of an
    /// earlier run, logged late) are not counted.
    since_ns: i128,
}

impl RegistryLog {
    pub fn mark() -> Self {
        let path =
            Path::new(&env().vars["IMGCACHE_TESTENV"]).join("registry-data/_ctl/registry.log");
        let start = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        let since_ns = i128::from(nanos());
        Self {
            path,
            start,
            since_ns,
        }
    }

    /// What the registry appended since the mark. Waits a moment first: the registry writes a
    /// line once it has sent the response.
    fn appended(&self) -> String {
        thread::sleep(Duration::from_millis(300));
        let mut f = fs::File::open(&self.path).unwrap();
        f.seek(SeekFrom::Start(self.start)).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The access-log lines appended since the mark that concern `/v2/<repo>/`.
    pub fn access_lines(&self, repo: &str) -> Vec<String> {
        let needle = format!(" /v2/{repo}/");
        self.appended()
            .lines()
            .filter(|l| l.contains(" HTTP/1.1\"") && l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// `GET /v2/<repo>/blobs/<digest>` access-log lines (whole or Range) since the mark, counted
    /// per digest.
    pub fn blob_gets_per_digest(&self, repo: &str) -> BTreeMap<String, usize> {
        let prefix = format!("\"GET /v2/{repo}/blobs/");
        let mut out = BTreeMap::new();
        for l in self.access_lines(repo) {
            if let Some(i) = l.find(&prefix) {
                let d = l[i + prefix.len()..].split(' ').next().unwrap().to_owned();
                *out.entry(d).or_insert(0) += 1;
            }
        }
        out
    }

    /// Blob GETs of `repos` answered since the mark (started after it).
    pub fn blob_responses(&self, repos: &[&str]) -> Vec<Served> {
        self.appended()
            .lines()
            .filter(|l| l.contains("msg=\"response completed\""))
            .filter_map(parse_served)
            .filter(|s| {
                s.start_ns >= self.since_ns
                    && s.method == "GET"
                    && repos
                        .iter()
                        .any(|r| s.uri.starts_with(&format!("/v2/{r}/blobs/")))
            })
            .collect()
    }

    /// Body bytes sent for blob GETs (200 and 206) of `repos` since the mark, and how many of
    /// those answers were ranged (206).
    pub fn blob_bytes_sent(&self, repos: &[&str]) -> (u64, usize) {
        let gets = self.blob_responses(repos);
        let ranged = gets.iter().filter(|s| s.status == 206).count();
        (
            gets.iter()
                .filter(|s| s.status == 200 || s.status == 206)
                .map(|s| s.written)
                .sum(),
            ranged,
        )
    }
}

/// `key=value` or `key="value"` of a logrus line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()
    } else {
        rest.split(' ').next()
    }
}

/// A `response completed` line of the registry's log.
pub fn parse_served(line: &str) -> Option<Served> {
    let end_ns = parse_rfc3339_ns(line.strip_prefix("time=\"")?.split('"').next()?)?;
    let duration = parse_go_duration_ns(field(line, "http.response.duration")?)?;
    Some(Served {
        method: field(line, "http.request.method")?.to_owned(),
        uri: field(line, "http.request.uri")?.to_owned(),
        status: field(line, "http.response.status")?.parse().ok()?,
        written: field(line, "http.response.written")?.parse().ok()?,
        start_ns: end_ns - duration,
        end_ns,
    })
}

/// `2026-11-30T06:21:36.250258627Z` as Unix nanoseconds (UTC only, as the registry logs).
pub fn parse_rfc3339_ns(t: &str) -> Option<i128> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let frac_ns: i128 = format!("{frac:0<9}")[..9].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2];
    Some(i128::from(secs) * 1_000_000_000 + frac_ns)
}

/// Go's `time.Duration` text (`1.5ms`, `850µs`, `2m3.5s`) in nanoseconds.
pub fn parse_go_duration_ns(s: &str) -> Option<i128> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, len) = [
            ("ns", 1.0),
            ("µs", 1e3),
            ("us", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, f)| (*f, u.len()))?;
        total += value * unit;
        rest = &rest[len..];
    }
    Some(total as i128)
}
