# shellcheck shell=bash
# Shared helpers for scripts/testenv/*.sh (sourced, not executed).


# dockerd, runc, ... live in /usr/sbin; a non-login CI shell may lack it in PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

# apt_install PKG... : install Debian packages without letting their services auto-start
# (a temporary /usr/sbin/policy-rc.d "exit 101" is created only if none exists, then removed).
# Runs 'apt-get update' first when the package lists are empty, and retries once after an update.
apt_install() {
  local created=0 rc=0
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created=1
  fi
  echo "[apt_install] $*" >&2
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then "${apt[@]}" update >&2 || true; fi
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "$@" </dev/null >&2 ||
    { "${apt[@]}" update >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "$@" </dev/null >&2; } ||
    rc=$?
  if [ "$created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

# need_cmds CMD:PKG... : apt_install (in one go) the packages whose command is missing
need_cmds() {
  local c missing=()
  for c in "$@"; do command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c##*:}"); done
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# need_pkgs PKG... : apt_install the packages that are not installed (for packages without a
# distinctive command, e.g. busybox-static)
need_pkgs() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'ok installed' >/dev/null || missing+=("$p")
  done
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# pid_running PID : true while PID exists and is not a zombie. Use this (not proc_alive) right
# after starting a daemon with '&': until the child has exec'd, its cmdline is still bash's.
pid_running() {
  [ -n "$1" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# proc_alive PID PATTERN : true if PID is a live (non-zombie) process whose cmdline contains PATTERN
proc_alive() {
  [ -n "$1" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] &&
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -F -- "$2" >/dev/null
}

# pid_listens PID PORT : true if PID holds a listening TCP socket on PORT (its own fd, matched
# by socket inode in /proc/net/tcp{,6}). An answer on the port alone proves nothing: another
# process that took the port first answers just as well while PID fails to bind it.
pid_listens() {
  local hex inode
  hex="$(printf ':%04X' "$2")"
  for inode in $(awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
    find "/proc/$1/fd" -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null | grep -q . && return 0
  done
  return 1
}

# docker_cli ARGS... : Debian's docker.io 20.10 client if installed (matches the daemon), else PATH's
docker_cli() {
  if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi
}
