#!/usr/bin/env python3
"""Writes the seed corpora of the imgcache fuzz targets into fuzz/seeds/<target>/.

Seeds are small (a few KB each) and deterministic. Archive seeds are written with Python's
tarfile (a writer independent of the one the targets use) in every dialect, around real tiny
layers and JSON documents from the test environment when it exists
(/tmp/imgcache-testenv, see scripts/ of the project), else around built-in stand-ins.

Usage: fuzz/gen_seeds.py [TESTENV_DIR]
"""

import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
TESTENV = sys.argv[1] if len(sys.argv) > 1 else "/tmp/imgcache-testenv"
BLOBS = os.path.join(TESTENV, "images/oci/blobs/sha256")

MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
GZ_LAYER_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR_LAYER_MT = "application/vnd.oci.image.layer.v1.tar"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def gz(b):
    return gzip.compress(b, compresslevel=6, mtime=0)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def tiny_layer(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1704067200
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def real_small_blobs():
    """Small real blobs of the test environment: (gzip layers, JSON documents)."""
    layers, docs = [], []
    if not os.path.isdir(BLOBS):
        return layers, docs
    for name in sorted(os.listdir(BLOBS)):
        path = os.path.join(BLOBS, name)
        if os.path.getsize(path) > 16 * 1024:
            continue
        data = open(path, "rb").read()
        if data[:2] == b"\x1f\x8b":
            layers.append(data)
        else:
            docs.append(data)
    return layers, docs


def layers():
    """Two tiny layers as (stored gzip, uncompressed tar)."""
    real, _ = real_small_blobs()
    out = [(blob, gzip.decompress(blob)) for blob in real[:2]]
    while len(out) < 2:
        plain = tiny_layer([("etc/hello-%d.txt" % len(out), b"hello %d\n" % len(out))])
        out.append((gz(plain), plain))
    return out


def config(diff_ids, arch="amd64", variant=None):
    c = {
        "architecture": arch,
        "config": {"Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "created": "2024-01-01T00:00:00Z",
        "history": [{"created_by": "ADD layer %d" % i} for i in range(len(diff_ids))],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
    }
    if variant:
        c["variant"] = variant
    return dumps(c)


def tar_bytes(entries, fmt=tarfile.GNU_FORMAT, end=True):
    """entries: (name, data) for files, (name, None) for dirs, (name, ('sym'|'hard', target))."""
    buf = io.BytesIO()
    t = tarfile.open(fileobj=buf, mode="w", format=fmt)
    for name, data in entries:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        if data is None:
            info.type = tarfile.DIRTYPE
            t.addfile(info)
        elif isinstance(data, tuple):
            info.type = tarfile.SYMTYPE if data[0] == "sym" else tarfile.LNKTYPE
            info.linkname = data[1]
            t.addfile(info)
        else:
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    end_of_members = t.offset
    t.close()
    # tarfile pads to a 10 KiB record; keep the members and the two zero blocks that close
    # the archive (or not even those).
    return buf.getvalue()[:end_of_members] + (b"\0" * 1024 if end else b"")


def oci_image(ls, arch="amd64", variant=None):
    """Blobs of one OCI image: (manifest bytes, [(digest, bytes)...])."""
    cfg = config([sha(plain) for _, plain in ls], arch, variant)
    manifest = dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MT,
            "config": {"mediaType": CONFIG_MT, "digest": "sha256:" + sha(cfg), "size": len(cfg)},
            "layers": [
                {"mediaType": GZ_LAYER_MT, "digest": "sha256:" + sha(s), "size": len(s)}
                for s, _ in ls
            ],
        }
    )
    blobs = [(sha(cfg), cfg)] + [(sha(s), s) for s, _ in ls] + [(sha(manifest), manifest)]
    return manifest, blobs


def desc(mt, blob, **extra):
    d = {"mediaType": mt, "digest": "sha256:" + sha(blob), "size": len(blob)}
    d.update(extra)
    return d


def archives():
    ls = layers()
    (s0, p0), (s1, p1) = ls
    cfg = config([sha(p0), sha(p1)])
    cid = sha(cfg)
    out = {}

    # docker save before engine 25.
    v1 = [sha(b"v1-%d" % i) for i in range(2)]
    ents = [(cid + ".json", cfg)]
    for i, plain in enumerate([p0, p1]):
        ents += [(v1[i], None), (v1[i] + "/VERSION", b"1.0"), (v1[i] + "/json", b"{}"),
                 (v1[i] + "/layer.tar", plain)]
    man = dumps([{"Config": cid + ".json", "RepoTags": ["127.0.0.1:5000/busybox:v1"],
                  "Layers": [v + "/layer.tar" for v in v1]}])
    ents += [("manifest.json", man),
             ("repositories", dumps({"127.0.0.1:5000/busybox": {"v1": v1[1]}}))]
    out["docker-legacy.tar"] = tar_bytes(ents)
    out["docker-legacy-ustar.tar"] = tar_bytes(ents, tarfile.USTAR_FORMAT)

    # podman / skopeo docker-archive: <diff_id>.tar plus symlinked <v1>/layer.tar aliases.
    ents = [(sha(p0) + ".tar", p0), (sha(p1) + ".tar", p1), (cid + ".json", cfg)]
    for i, plain in enumerate([p0, p1]):
        ents += [(v1[i] + "/layer.tar", ("sym", "../" + sha(plain) + ".tar")),
                 (v1[i] + "/VERSION", b"1.0")]
    man = dumps([{"Config": cid + ".json", "RepoTags": ["127.0.0.1:5000/busybox:v1"],
                  "Layers": [sha(p0) + ".tar", sha(p1) + ".tar"]}])
    ents += [("manifest.json", man), ("repositories", b"{}")]
    out["podman-docker-archive.tar"] = tar_bytes(ents, tarfile.PAX_FORMAT)

    # The same, layers named through hardlinks, no end-of-archive marker.
    ents = [(sha(p0) + ".tar", p0), (v1[0] + "/layer.tar", ("hard", sha(p0) + ".tar")),
            (cid[:0] + sha(config([sha(p0)])) + ".json", config([sha(p0)]))]
    man = dumps([{"Config": sha(config([sha(p0)])) + ".json", "RepoTags": None,
                  "Layers": [v1[0] + "/layer.tar"]}])
    ents += [("manifest.json", man)]
    out["hardlink-no-end.tar"] = tar_bytes(ents, end=False)

    # crane tarball.
    ents = [("sha256:" + cid, cfg), (sha(s0) + ".tar.gz", s0), (sha(s1) + ".tar.gz", s1)]
    man = dumps([{"Config": "sha256:" + cid, "RepoTags": ["busybox:v1"],
                  "Layers": [sha(s0) + ".tar.gz", sha(s1) + ".tar.gz"]}])
    out["crane.tar"] = tar_bytes(ents + [("manifest.json", man)])

    # OCI layout, one image.
    manifest, blobs = oci_image(ls)
    index = dumps({"schemaVersion": 2, "manifests": [
        desc(MANIFEST_MT, manifest, annotations={"org.opencontainers.image.ref.name": "v1"})]})
    base = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
            ("blobs", None), ("blobs/sha256", None)]
    out["oci.tar"] = tar_bytes(base + [("blobs/sha256/" + d, b) for d, b in blobs],
                               tarfile.PAX_FORMAT)

    # docker save from 25 on: OCI layout plus manifest.json.
    man = dumps([{"Config": "blobs/sha256/" + cid, "RepoTags": ["busybox:v1"],
                  "Layers": ["blobs/sha256/" + sha(s0), "blobs/sha256/" + sha(s1)]}])
    index = dumps({"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": [
        desc(MANIFEST_MT, manifest, annotations={
            "io.containerd.image.name": "docker.io/library/busybox:v1",
            "org.opencontainers.image.ref.name": "v1"})]})
    out["docker-combined.tar"] = tar_bytes(
        [("blobs", None), ("blobs/sha256", None)]
        + [("blobs/sha256/" + d, b) for d, b in blobs]
        + [("index.json", index), ("manifest.json", man),
           ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')])

    # OCI layout with a multi-platform index (and a buildx attestation manifest to skip).
    m_amd, b_amd = oci_image([ls[0]])
    m_arm, b_arm = oci_image([ls[1]], "arm64", "v8")
    nested = dumps({"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": [
        desc(MANIFEST_MT, m_amd, platform={"architecture": "amd64", "os": "linux"}),
        desc(MANIFEST_MT, m_arm, platform={"architecture": "arm64", "os": "linux",
                                           "variant": "v8"}),
        desc(MANIFEST_MT, m_amd, platform={"architecture": "unknown", "os": "unknown"}),
    ]})
    index = dumps({"schemaVersion": 2, "manifests": [
        desc(INDEX_MT, nested, annotations={"org.opencontainers.image.ref.name": "multi:v1"})]})
    seen = {}
    for d, b in b_amd + b_arm + [(sha(nested), nested)]:
        seen[d] = b
    out["oci-multiarch.tar"] = tar_bytes(
        [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
        + [("blobs/sha256/" + d, b) for d, b in seen.items()], tarfile.PAX_FORMAT)

    # Long names (GNU and PAX extensions) in front of a valid image.
    long_name = "long/" + "n" * 150 + "/layer.tar"
    man = dumps([{"Config": cid + ".json", "RepoTags": ["busybox:v1"],
                  "Layers": [long_name, sha(p1) + ".tar"]}])
    ents = [(long_name, p0), (sha(p1) + ".tar", p1), (cid + ".json", cfg), ("manifest.json", man)]
    out["long-names-gnu.tar"] = tar_bytes(ents, tarfile.GNU_FORMAT)
    out["long-names-pax.tar"] = tar_bytes(ents, tarfile.PAX_FORMAT)

    # A whole archive gzip-compressed (the outer-compressed path), and a corrupt one.
    out["docker-legacy.tar.gz"] = gz(out["docker-legacy.tar"])
    broken = bytearray(out["oci.tar"])
    broken[1536 + 30] ^= 0x20  # inside index.json (the second entry)
    out["oci-corrupt-index.tar"] = bytes(broken)
    return out


def json_docs():
    """Role byte + document; see fuzz_targets/json_docs.rs for roles and placeholders."""
    out = {}
    legacy = b'[{"Config":"@C@.json","RepoTags":["busybox:v1"],"Layers":["@D@/layer.tar"]}]'
    out["0-legacy-manifest"] = b"\x00" + legacy
    out["0-crane-manifest"] = b"\x00" + (
        b'[{"Config":"sha256:@C@","RepoTags":["busybox:v1","127.0.0.1:5000/busybox:v1"],'
        b'"Layers":["@L@.tar.gz"]}]')
    out["0-podman-manifest"] = b"\x00" + (
        b'[{"Config":"@C@.json","RepoTags":null,"Layers":["@D@.tar"]},'
        b'{"Config":"blobs/sha256/@C@","Layers":["blobs/sha256/@L@"]}]')
    index = (b'{"schemaVersion":2,"mediaType":"' + INDEX_MT.encode() + b'","manifests":[{"mediaType":"'
             + MANIFEST_MT.encode() + b'","digest":"sha256:@M@","size":@MS@,'
             b'"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}')
    out["1-oci-index"] = b"\x01" + index
    out["1-oci-index-nested"] = b"\x01" + (
        b'{"schemaVersion":2,"manifests":[{"mediaType":"' + INDEX_MT.encode()
        + b'","digest":"sha256:@N@","size":@NS@}]}')
    out["1-docker-null-manifests"] = b"\x01" + b'{"schemaVersion":2,"manifests":null}'
    out["2-combined-index"] = b"\x02" + index
    manifest = (b'{"schemaVersion":2,"mediaType":"' + MANIFEST_MT.encode() + b'","config":{"mediaType":"'
                + CONFIG_MT.encode() + b'","digest":"sha256:@C@","size":@CS@},"layers":[{"mediaType":"'
                + GZ_LAYER_MT.encode() + b'","digest":"sha256:@L@","size":@LS@}]}')
    out["3-manifest"] = b"\x03" + manifest
    out["3-manifest-plain-layer"] = b"\x03" + manifest.replace(b"@L@", b"@U@").replace(
        b"@LS@", b"@US@").replace(GZ_LAYER_MT.encode(), TAR_LAYER_MT.encode())
    out["4-nested-index"] = b"\x04" + index
    cfg = (b'{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"]},'
           b'"rootfs":{"type":"layers","diff_ids":["sha256:@D@"]}}')
    out["5-oci-config"] = b"\x05" + cfg
    out["6-legacy-config"] = b"\x06" + cfg
    out["7-combined-manifest-json"] = b"\x07" + (
        b'[{"Config":"blobs/sha256/@C@","RepoTags":["busybox:v1"],"Layers":["blobs/sha256/@L@"]}]')
    # Real documents, verbatim, in the roles they play.
    _, docs = real_small_blobs()
    for doc in docs:
        try:
            j = json.loads(doc)
        except ValueError:
            continue
        name = sha(doc)[:12]
        if "rootfs" in j:
            out["5-real-config-" + name] = b"\x05" + doc
            out["6-real-config-" + name] = b"\x06" + doc
        elif "config" in j:
            out["3-real-manifest-" + name] = b"\x03" + doc
        elif "manifests" in j:
            out["1-real-index-" + name] = b"\x01" + doc
            out["4-real-index-" + name] = b"\x04" + doc
    real_index = os.path.join(TESTENV, "images/oci/index.json")
    if os.path.exists(real_index):
        out["1-real-index-json"] = b"\x01" + open(real_index, "rb").read()
    for fx in ("docker-save-tag.tar", "podman-docker-archive.tar", "docker-save-multi.tar"):
        path = os.path.join(TESTENV, "fixtures", fx)
        if os.path.exists(path):
            with tarfile.open(path) as t:
                out["0-real-" + fx] = b"\x00" + t.extractfile("manifest.json").read()
    return out


def references():
    d = sha(b"")
    refs = [
        "busybox", "busybox:v1", "127.0.0.1:5000/busybox:v1",
        "gcr.io/k8s-minikube/kicbase:v0.0.36@sha256:" + d, "index.docker.io/foo/bar:1",
        "localhost/x", "[::1]:5000/a/b/c:tag_1.2-x", "busybox@sha256:" + d, "sha256:" + d, d,
        "  sha256:" + d + "  ", "linux/amd64", "linux/arm64/v8", "linux/arm", "windows/x86_64",
        "docker.io/library/busybox:latest",
        "registry.example.com:443/team/app.name/sub_dir:1.0.0-rc1",
    ]
    return {"ref-%02d" % i: r.encode() for i, r in enumerate(refs)}


def dialect():
    # Inputs of the structured target are read by `arbitrary`: any bytes are a valid input.
    # Random inputs of a few sizes give the fuzzer varied starting structures. (The
    # `valid-<dialect>-<compression>` seeds beside them were found by fuzzing: inputs that
    # build a clean archive of that dialect; this script keeps them.)
    rng = random.Random(20240101)
    return {"random-%02d" % i: bytes(rng.getrandbits(8) for _ in range(n))
            for i, n in enumerate([64, 128, 256, 512, 512, 1024, 1024, 2048, 2048, 4096])}


def write(target, files, keep_prefix=None):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if not (keep_prefix and old.startswith(keep_prefix)):
            os.remove(os.path.join(d, old))
    for name, data in sorted(files.items()):
        assert len(data) < 64 * 1024, (target, name, len(data))
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%-10s %3d seeds, %6d bytes" % (target, len(files), sum(map(len, files.values()))))


if __name__ == "__main__":
    write("reference", references())
    write("json_docs", json_docs())
    write("archive", archives())
    write("dialect", dialect(), keep_prefix="valid-")
