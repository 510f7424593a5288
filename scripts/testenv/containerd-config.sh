#!/usr/bin/env bash
# containerd-config.sh BINARY DIR SNAPSHOTTER > DIR/config.toml
#   The config of a private containerd (1.6 to 2.x) whose state, sockets and opt directory all
#   live in DIR: CRI, NRI and unused snapshotters disabled (2.x splits CRI in three plugins and
#   turns NRI on, listening on /var/run/nri/nri.sock), opt and image-verifier paths moved inside
#   DIR (else /opt/containerd), and the 2.x transfer service's unpack_config set (without it
#   `ctr images pull` fails with "no unpack platforms"). Config version 3 for 2.x, 2 before.
#   Used by newer-engines.sh and bench/lib.sh.
set -euo pipefail
bin="$1" dir="$2" snap="$3"
sock="$dir/containerd.sock"
ver="$("$bin" --version | awk '{print $3}')"
major="${ver#v}"
major="${major%%.*}"
disabled='"io.containerd.grpc.v1.cri", "io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"'
if [ "$major" -ge 2 ]; then
  cfgver=3
  disabled="$disabled"', "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.grpc.v1.sandbox-controllers", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.snapshotter.v1.blockfile"'
else
  cfgver=2
fi
cat <<TOML
# written by scripts/testenv/containerd-config.sh for containerd $ver
version = $cfgver
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [$disabled]

[grpc]
  address = "$sock"
  tcp_address = ""

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/opt"
  [plugins."io.containerd.image-verifier.v1.bindir"]
    bin_dir = "$dir/opt/image-verifier/bin"
  [plugins."io.containerd.transfer.v1.local"]
    [[plugins."io.containerd.transfer.v1.local".unpack_config]]
      platform = "linux/$(dpkg --print-architecture)"
      snapshotter = "$snap"
TOML
