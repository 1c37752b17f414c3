#!/usr/bin/env bash
# Fetches the demo data (Fashion-MNIST, IDX files gzip-compressed) into demo/data/ on first use.
# Source: Debian package dataset-fashion-mnist 0.0~git20200523.55506a9-1 (bookworm/main), which installs
# the four files under /usr/share/datasets/fashion-mnist/. Idempotent: when demo/data/ already holds the
# four files with the expected SHA-256 it does nothing. Exits non-zero with one "error:" line on failure.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/data"
src=/usr/share/datasets/fashion-mnist
pkg=dataset-fashion-mnist
log="${TMPDIR:-/tmp}/bitbudget-fetch-data.log"

# SHA-256 of the .gz files exactly as the Debian package ships them.
declare -A sha=(
  [train-images-idx3-ubyte.gz]=b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
  [train-labels-idx1-ubyte.gz]=0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
  [t10k-images-idx3-ubyte.gz]=cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
  [t10k-labels-idx1-ubyte.gz]=8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
)

fail() { echo "error: $*" >&2; exit 1; }

# Prints the names of the files in $1 that are missing or have the wrong checksum.
bad_files() {
  local dir=$1 f
  for f in "${!sha[@]}"; do
    if [ ! -f "$dir/$f" ] || [ "$(sha256sum "$dir/$f" | cut -d' ' -f1)" != "${sha[$f]}" ]; then echo "$f"; fi
  done
}

[ -z "$(bad_files "$dest")" ] && exit 0

if [ -n "$(bad_files "$src")" ]; then
  command -v apt-get >/dev/null || fail "Fashion-MNIST not found in $src and apt-get is unavailable; install the Debian package $pkg (or copy its four .gz files into $dest)."
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "installing $pkg needs root; run: sudo apt-get install -y $pkg"
    sudo="sudo"
  fi
  echo "Installing the Debian package $pkg (Fashion-MNIST, ~30 MB) ..." >&2
  # A fresh machine may have no package lists yet: update once and retry.
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >"$log" 2>&1; then
    { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg"; } >>"$log" 2>&1 \
      || fail "apt-get install $pkg failed (log: $log)."
  fi
  missing="$(bad_files "$src" | tr '\n' ' ')"
  [ -z "$missing" ] || fail "$pkg is installed but these files in $src are missing or differ from the expected SHA-256: $missing"
fi

mkdir -p "$dest" || fail "cannot create $dest."
for f in "${!sha[@]}"; do
  cp "$src/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f" || fail "cannot copy $src/$f to $dest."
done
missing="$(bad_files "$dest" | tr '\n' ' ')"
[ -z "$missing" ] || fail "copied files fail the SHA-256 check: $missing"
echo "Fashion-MNIST ready in $dest" >&2
