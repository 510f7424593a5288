//! Human and JSON renderings of command results.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use imgcache::{Archive, Error, FileReport, Level, Problem};
use serde::Serialize;

fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Sizes as engines print them (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn problem_line(p: &Problem) -> String {
    let mut where_ = Vec::new();
    if let Some(l) = p.layer {
        where_.push(format!("layer {l}"));
    }
    if let Some(e) = &p.entry {
        where_.push(format!("entry {e:?}"));
    }
    let at = if where_.is_empty() {
        String::new()
    } else {
        format!(" [{}]", where_.join(", "))
    };
    format!(
        "{}: {p}{at}",
        serde_json::to_value(p.check)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    )
}

#[derive(Serialize)]
struct VerifyDoc<'a> {
    ok: bool,
    level: Level,
    files: &'a [FileReport],
}

pub fn verify(reports: &[FileReport], level: Level, json: bool) -> Result<()> {
    if json {
        return print_json(&VerifyDoc {
            ok: reports.iter().all(|r| r.ok),
            level,
            files: reports,
        });
    }
    let mut out = io::stdout().lock();
    let level_name = match level {
        Level::Fast => "fast",
        Level::Deep => "deep",
    };
    for r in reports {
        let verdict = if r.ok { "OK" } else { "FAILED" };
        let dialect = r
            .dialect
            .map(|d| {
                format!(
                    ", {}",
                    serde_json::to_value(d)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("")
                )
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{verdict:<6} {} ({level_name}{dialect})",
            r.path.display()
        )?;
        if let Some(e) = &r.error {
            writeln!(out, "       error {}", problem_line(e))?;
        }
        for img in &r.images {
            let id = img
                .image_id
                .map_or("unknown image ID".to_string(), |d| d.to_string());
            let tags = if img.tags.is_empty() {
                "<no tags>".to_string()
            } else {
                img.tags.join(", ")
            };
            let platform = img
                .platform
                .as_ref()
                .map_or("?".to_string(), |p| p.to_string());
            writeln!(
                out,
                "       {id}  {tags}  {platform}  {} layers  {}",
                img.layer_count,
                human_size(img.size)
            )?;
            for f in &img.failures {
                writeln!(out, "         fail  {}", problem_line(f))?;
            }
            for w in &img.warnings {
                writeln!(out, "         warn  {}", problem_line(w))?;
            }
        }
        for w in &r.warnings {
            writeln!(out, "       warn  {}", problem_line(w))?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct InspectDoc<'a> {
    path: &'a Path,
    dialect: imgcache::Dialect,
    compression: imgcache::Compression,
    images: &'a [imgcache::ArchiveImage],
    warnings: &'a [Problem],
    totals: Totals,
}

#[derive(Serialize)]
struct Totals {
    images: usize,
    layers: usize,
    /// Stored bytes of all layers of all images (shared layers counted once per image).
    layer_bytes: u64,
    file_bytes: u64,
}

pub fn inspect(a: &Archive, json: bool) -> Result<()> {
    let totals = Totals {
        images: a.images.len(),
        layers: a.images.iter().map(|i| i.layers.len()).sum(),
        layer_bytes: a.images.iter().map(|i| i.stored_size()).sum(),
        file_bytes: std::fs::metadata(a.path()).map(|m| m.len()).unwrap_or(0),
    };
    if json {
        return print_json(&InspectDoc {
            path: a.path(),
            dialect: a.dialect,
            compression: a.compression(),
            images: &a.images,
            warnings: &a.warnings,
            totals,
        });
    }
    let mut out = io::stdout().lock();
    let name = |v: serde_json::Value| v.as_str().unwrap_or("").to_owned();
    writeln!(out, "{}", a.path().display())?;
    writeln!(
        out,
        "  dialect {}, archive compression {}, {} image(s), {} layers, {} in layers, {} file",
        name(serde_json::to_value(a.dialect)?),
        name(serde_json::to_value(a.compression())?),
        totals.images,
        totals.layers,
        human_size(totals.layer_bytes),
        human_size(totals.file_bytes)
    )?;
    for img in &a.images {
        writeln!(out)?;
        writeln!(
            out,
            "  image    {}",
            img.id().map_or("unknown".into(), |d| d.to_string())
        )?;
        writeln!(
            out,
            "  tags     {}",
            if img.tags.is_empty() {
                "<none>".into()
            } else {
                img.tags.join(", ")
            }
        )?;
        if let Some(p) = &img.platform {
            writeln!(out, "  platform {p}")?;
        }
        if let Some(c) = &img.created {
            writeln!(out, "  created  {c}")?;
        }
        if let Some(m) = &img.manifest_digest {
            writeln!(out, "  manifest {m}")?;
        }
        writeln!(out, "  config   {}", img.config_entry)?;
        writeln!(
            out,
            "  layers   {} ({})",
            img.layers.len(),
            human_size(img.stored_size())
        )?;
        for (i, l) in img.layers.iter().enumerate() {
            let diff = l.diff_id.map_or("diff_id ?".into(), |d| d.to_string());
            let comp = l.compression.map_or("?".into(), |c| {
                name(serde_json::to_value(c).unwrap_or_default())
            });
            let size = l.size.map_or("missing".into(), human_size);
            writeln!(out, "    {i:>3}  {diff}  {comp:<5} {size:>9}  {}", l.entry)?;
            if let Some(b) = l.blob_digest {
                writeln!(out, "         blob {b}")?;
            }
        }
        for p in &img.problems {
            writeln!(out, "  problem  {}", problem_line(p))?;
        }
    }
    for w in &a.warnings {
        writeln!(out, "  warn     {}", problem_line(w))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ErrorDoc<'a> {
    ok: bool,
    path: &'a Path,
    error: Problem,
}

pub fn error(path: &Path, e: &Error, json: bool) -> Result<()> {
    if json {
        return print_json(&ErrorDoc {
            ok: false,
            path,
            error: e.to_problem(),
        });
    }
    eprintln!("imgcache: {e}");
    Ok(())
}

/// A progress bar on stderr while pulling, only when stderr is a terminal and not --json.
/// A progress bar on stderr, shown only on a terminal and without `--json`.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Bytes moved (pull, push).
    pub fn bytes(json: bool) -> Self {
        Self {
            bar: terminal_bar(json, BYTES_BAR),
        }
    }

    /// Images done out of `images` (sync).
    pub fn images(json: bool, images: usize) -> Self {
        let bar = terminal_bar(json, "{spinner} {pos}/{len} images {wide_bar} {msg}");
        if let Some(b) = &bar {
            b.set_length(images as u64);
        }
        Self { bar }
    }

    pub fn pull_callback(
        &self,
    ) -> Option<impl Fn(imgcache::cache::ProgressEvent) + Send + Sync + 'static> {
        let bar = self.bar.clone()?;
        Some(move |e: imgcache::cache::ProgressEvent| match e {
            imgcache::cache::ProgressEvent::Started {
                size, resumed_at, ..
            } => {
                bar.inc_length(size);
                bar.inc(resumed_at);
            }
            imgcache::cache::ProgressEvent::Bytes { bytes, .. } => bar.inc(bytes),
            imgcache::cache::ProgressEvent::Done { .. } => {}
        })
    }

    pub fn push_callback(
        &self,
    ) -> Option<impl Fn(imgcache::cache::PushProgress) + Send + Sync + 'static> {
        let bar = self.bar.clone()?;
        Some(move |p: imgcache::cache::PushProgress| match p {
            imgcache::cache::PushProgress::Planned { bytes } => bar.set_length(bytes),
            imgcache::cache::PushProgress::Sent { bytes } => bar.inc(bytes),
        })
    }

    pub fn sync_callback(
        &self,
    ) -> Option<impl Fn(&imgcache::cache::SyncItem) + Send + Sync + 'static> {
        let bar = self.bar.clone()?;
        Some(move |i: &imgcache::cache::SyncItem| {
            bar.set_message(i.source.clone());
            bar.inc(1);
        })
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

const BYTES_BAR: &str = "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {eta}";

fn terminal_bar(json: bool, template: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (!json && io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

pub fn push(r: &imgcache::cache::PushReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{}", r.destination)?;
    writeln!(
        out,
        "  digest       {} ({})",
        r.digest,
        r.platforms.join(", ")
    )?;
    if r.already_present {
        writeln!(out, "  already there: nothing sent")?;
    } else {
        writeln!(
            out,
            "  uploaded     {} in {} blobs; {} mounted, {} already there; {} manifests",
            human_size(r.bytes_uploaded),
            r.blobs_uploaded,
            r.blobs_mounted,
            r.blobs_present,
            r.manifests_pushed
        )?;
    }
    if r.signatures_pushed > 0 {
        writeln!(out, "  signatures   {} put", r.signatures_pushed)?;
    }
    Ok(())
}

pub fn sync(r: &imgcache::cache::SyncReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let mut out = io::stdout().lock();
    for i in &r.images {
        let status = match i.status {
            imgcache::cache::SyncStatus::Pushed => "pushed ",
            imgcache::cache::SyncStatus::Skipped => "skipped",
            imgcache::cache::SyncStatus::Failed => "FAILED ",
        };
        write!(out, "{status} {} -> {}", i.source, i.destination)?;
        match &i.error {
            Some(e) => writeln!(out, ": {e}")?,
            None if i.bytes_uploaded > 0 => writeln!(out, " ({})", human_size(i.bytes_uploaded))?,
            None => writeln!(out)?,
        }
    }
    writeln!(
        out,
        "{} pushed, {} skipped, {} failed; {} uploaded",
        r.pushed,
        r.skipped,
        r.failed,
        human_size(r.bytes_uploaded)
    )?;
    Ok(())
}

pub fn pull(r: &imgcache::cache::PullReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{}", r.reference)?;
    writeln!(out, "  image ID     {}", r.image_id)?;
    writeln!(out, "  digest       {}", r.distribution_digest)?;
    if r.distribution_digest != r.manifest_digest {
        writeln!(out, "  manifest     {} ({})", r.manifest_digest, r.platform)?;
    }
    if let Some(by) = &r.served_by {
        writeln!(out, "  served by    {by}")?;
    }
    let source = if r.from_cache {
        " (from the cache, no network)"
    } else {
        ""
    };
    writeln!(
        out,
        "  fetched      {} in {} blobs, reused {} in {} blobs{source}",
        human_size(r.bytes_fetched),
        r.blobs_fetched,
        human_size(r.bytes_reused),
        r.blobs_reused
    )?;
    Ok(())
}

#[derive(Serialize)]
struct VerifyRefDoc<'a> {
    ok: bool,
    level: Level,
    reference: &'a str,
    image: &'a imgcache::ImageReport,
}

pub fn verify_ref(
    reference: &str,
    r: &imgcache::ImageReport,
    level: Level,
    json: bool,
) -> Result<()> {
    if json {
        return print_json(&VerifyRefDoc {
            ok: r.ok,
            level,
            reference,
            image: r,
        });
    }
    let mut out = io::stdout().lock();
    let verdict = if r.ok { "OK" } else { "FAILED" };
    let level = if level == Level::Deep { "deep" } else { "fast" };
    writeln!(out, "{verdict:<6} {reference} ({level}, cache)")?;
    let id = r
        .image_id
        .map_or("unknown image ID".to_string(), |d| d.to_string());
    writeln!(
        out,
        "       {id}  {} layers  {}",
        r.layer_count,
        human_size(r.size)
    )?;
    for f in &r.failures {
        writeln!(out, "         fail  {}", problem_line(f))?;
    }
    Ok(())
}

pub fn inspect_ref(img: &imgcache::cache::CachedImage, json: bool) -> Result<()> {
    if json {
        return print_json(img);
    }
    let mut out = io::stdout().lock();
    let e = &img.entry;
    writeln!(out, "{}", e.reference)?;
    writeln!(out, "  image    {}", e.image_id)?;
    writeln!(out, "  platform {}", e.platform)?;
    if let Some(c) = &img.created {
        writeln!(out, "  created  {c}")?;
    }
    if let Some(i) = &e.index_digest {
        writeln!(out, "  index    {i}")?;
    }
    writeln!(out, "  manifest {} ({})", e.manifest_digest, img.media_type)?;
    writeln!(
        out,
        "  layers   {} ({} with manifest and config)",
        img.layers.len(),
        human_size(e.size)
    )?;
    for (i, l) in img.layers.iter().enumerate() {
        let diff = l.diff_id.map_or("diff_id ?".into(), |d| d.to_string());
        let present = if l.present { "" } else { "  MISSING" };
        writeln!(
            out,
            "    {i:>3}  {}  {:>9}  diff_id {diff}{present}",
            l.digest,
            human_size(l.size)
        )?;
    }
    Ok(())
}

pub fn ls(entries: &[imgcache::cache::ListEntry], json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({ "images": entries }));
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{:<50} {:<12} {:<16} {:>9}  LAST USED",
        "REFERENCE", "IMAGE ID", "PLATFORM", "SIZE"
    )?;
    for e in entries {
        writeln!(
            out,
            "{:<50} {:<12} {:<16} {:>9}  {}",
            e.reference,
            e.image_id.0.short(),
            e.platform,
            human_size(e.size),
            ago(e.last_used)
        )?;
    }
    Ok(())
}

fn ago(ts: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = (now - ts).max(0);
    match s {
        0..60 => format!("{s} seconds ago"),
        60..3600 => format!("{} minutes ago", s / 60),
        3600..86400 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

pub fn simple(value: &impl Serialize, text: &str, json: bool) -> Result<()> {
    if json {
        return print_json(value);
    }
    println!("{text}");
    Ok(())
}

/// `save -o FILE`: what was written; when `index.json` names the index the reference was pulled
/// by, which of its platforms the file holds.
pub fn save(
    r: &imgcache::cache::SaveReport,
    reference: &str,
    output: &str,
    format: &impl Serialize,
    json: bool,
) -> Result<()> {
    if json {
        let mut doc = serde_json::json!({"ok": true, "reference": reference, "image_id": r.image_id, "output": output, "format": format});
        if let Some(ix) = &r.index {
            doc["index"] = serde_json::to_value(ix)?;
        }
        doc["signatures"] = r.signatures.into();
        return print_json(&doc);
    }
    println!("saved {reference} ({}) to {output}", r.image_id);
    if let Some(note) = save_index_note(r) {
        println!("  {note}");
    }
    if r.signatures > 0 {
        // podman load refuses an index.json of several manifests; its oci-archive transport
        // picks one by its ref.name, which a save by tag writes.
        let tag = imgcache::Reference::parse(reference)
            .ok()
            .and_then(|r| r.tag);
        let podman = match tag {
            Some(tag) => format!("podman pull oci-archive:{output}:{tag}"),
            None => "save by tag".into(),
        };
        println!(
            "  with {} kept signatures: the file lists several manifests, which `podman load` refuses; use `{podman}`, or save with --no-signatures",
            r.signatures
        );
    }
    Ok(())
}

/// Which platforms of the index a save holds, when the index lists more.
pub fn save_index_note(r: &imgcache::cache::SaveReport) -> Option<String> {
    let ix = r.index.as_ref().filter(|ix| ix.is_partial())?;
    Some(format!(
        "index {} lists {}; the file holds {} only",
        ix.digest,
        ix.platforms.join(", "),
        ix.saved.join(", ")
    ))
}

pub fn fsck(r: &imgcache::cache::FsckReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} ({} blobs checked)",
        if r.ok { "OK" } else { "PROBLEMS FOUND" },
        r.blobs_checked
    )?;
    for (what, list) in [
        ("missing", &r.missing),
        ("corrupt", &r.corrupt),
        ("broken reference", &r.broken_references),
        ("unreferenced (prune removes)", &r.unreferenced),
        ("repaired", &r.repaired),
    ] {
        for item in list {
            writeln!(out, "  {what}: {item}")?;
        }
    }
    Ok(())
}

/// `--json` documents for errors that end a command.
pub fn error_json(e: &anyhow::Error) {
    let problem = match e.downcast_ref::<Error>() {
        Some(err) => err.to_problem(),
        None => Problem::new(imgcache::Check::Environment, format!("{e:#}")),
    };
    let _ = print_json(&serde_json::json!({ "ok": false, "error": problem }));
}

pub fn status(r: &imgcache::cache::StatusReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let mut out = io::stdout().lock();
    let yes = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "{}", r.reference)?;
    match r.image_id {
        Some(id) => writeln!(out, "  cached        yes, image {id}")?,
        None => writeln!(out, "  cached        no")?,
    }
    if r.cached {
        writeln!(out, "  valid (fast)  {}", yes(r.valid))?;
        for f in &r.failures {
            writeln!(out, "    fail  {}", problem_line(f))?;
        }
    }
    for s in &r.signatures {
        writeln!(out, "  signed        {} by {}", s.format, s.signed_by)?;
    }
    let e = &r.engine;
    let engine_id = e
        .engine_id
        .as_deref()
        .map(|i| format!(" (the engine calls it {i})"))
        .unwrap_or_default();
    writeln!(
        out,
        "  in {:<11}{}{engine_id}  [{}]",
        e.kind,
        yes(e.present),
        e.endpoint
    )?;
    let tag = match (&e.tag_image_id, e.tagged) {
        (_, true) => "yes".to_owned(),
        (Some(other), false) => format!("no: it names {other}"),
        (None, false) => "no".to_owned(),
    };
    writeln!(out, "  tagged        {tag}")?;
    Ok(())
}

pub fn load(r: &imgcache::cache::LoadReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let what = match r.action {
        imgcache::cache::LoadAction::AlreadyPresent => "already present: nothing sent",
        imgcache::cache::LoadAction::Tagged => "already present: tagged",
        imgcache::cache::LoadAction::Loaded => "loaded",
    };
    let pulled = if r.pulled { " (pulled first)" } else { "" };
    println!(
        "{} {} in {} at {}: {what}{pulled}",
        r.reference, r.image_id, r.engine, r.endpoint
    );
    Ok(())
}

/// `serve`: the one line scripts wait for, flushed at once (stdout may be a pipe).
pub fn serve_listening(url: &str, json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::json!({ "url": url }))?;
    } else {
        writeln!(out, "listening on {url}")?;
    }
    out.flush()?;
    Ok(())
}

/// `serve --print-config`: each file as a comment naming its path, then its content.
pub fn serve_config(url: &str, files: &[imgcache::serve::ConfigFile], json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({ "url": url, "files": files }));
    }
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("# ---- {}", f.path);
        print!("{}", f.content);
    }
    Ok(())
}
