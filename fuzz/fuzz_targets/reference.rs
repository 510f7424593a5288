//! Reference, digest, image ID and platform parsing on arbitrary UTF-8, with round trips:
//! whatever parses must print as text that parses back to the same value.
#![no_main]

use imgcache::{BlobDigest, DiffId, Digest, ImageId, PlatformSpec, Reference};
use imgcache_fuzz::short;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(r) = Reference::parse(text) {
        let shown = r.to_string();
        let again = Reference::parse(&shown).unwrap_or_else(|e| {
            panic!(
                "reference {} parses, but its normalized form {} does not: {e}",
                short(text),
                short(&shown)
            )
        });
        assert!(again == r, "{} -> {} parses differently", short(text), short(&shown));
        assert_eq!(again.to_string(), shown, "printing is not stable");
        assert!(shown.starts_with(&r.name()));
        assert!(r.tag.is_some() || r.digest.is_some(), "{}: neither tag nor digest", short(text));
    }
    if let Ok(d) = Digest::parse(text) {
        assert_eq!(d.to_string(), text, "a digest prints differently from how it was written");
        assert_eq!(Digest::from_hex(&d.hex()), Some(d));
        assert_eq!(d.short(), d.hex()[..12]);
        assert_eq!(DiffId::parse(text).ok(), Some(DiffId(d)));
        assert_eq!(BlobDigest::parse(text).ok(), Some(BlobDigest(d)));
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(serde_json::from_str::<Digest>(&json).ok(), Some(d));
    }
    if let Ok(id) = ImageId::parse_user(text) {
        let shown = id.to_string();
        assert_eq!(ImageId::parse_user(&shown).ok(), Some(id));
        assert_eq!(ImageId::parse(&shown).ok(), Some(id));
        assert_eq!(ImageId::parse_user(&id.0.hex()).ok(), Some(id));
    }
    // Digests inside JSON strings (escapes and all) go through the same parser.
    let _ = serde_json::from_str::<Digest>(text);
    if let Ok(p) = PlatformSpec::parse(text) {
        let shown = p.to_string();
        let again = PlatformSpec::parse(&shown).unwrap_or_else(|e| {
            panic!("platform {} parses, but {} does not: {e}", short(text), short(&shown))
        });
        assert!(again == p, "{} -> {} parses differently", short(text), short(&shown));
        assert!(p.matches(&p.os, &p.architecture, p.variant.as_deref()));
    }
});
