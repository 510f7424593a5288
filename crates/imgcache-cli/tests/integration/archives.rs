//! Real tarballs made by real tools: every image ID matches the one computed independently.

use crate::support::*;

#[test]
fn every_real_fixture_verifies_deep_with_its_independent_image_ids() {
    let env = env();
    assert!(
        env.rows.len() >= 8,
        "expected the fixtures of up.sh, found {}",
        env.rows.len()
    );
    for f in &env.rows {
        let run = imgcache(&["verify", "--deep", "--json", f.file.to_str().unwrap()]);
        assert_eq!(
            run.code, 0,
            "{}: {}\n{}",
            f.producer, run.stdout, run.stderr
        );
        let doc = run.json();
        assert_eq!(image_ids(&doc["files"][0]), f.image_ids, "{}", f.producer);
    }
}
