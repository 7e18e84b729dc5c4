#!/usr/bin/env bash
# Builds husk's Debian package: release builds of huskd, husk-monitor and huskctl, the systemd
# unit (packaging/husk.service), /etc/husk/config.toml as a conffile (`huskd config default`:
# every key with its default and a comment), an empty /etc/husk/certs.d, shell completions
# (bash, zsh, fish) and man pages generated from the clap definitions, and the operator docs.
# The tree is staged under target/debian/ and packed with `dpkg-deb --build` (no cargo-deb: the
# package spans three crates of the workspace). Prints the package's path as its last line.
#
#   bash scripts/package.sh                 # target/debian/husk_<version>_<arch>.deb
#   HUSK_DEB_VERSION=0.1.0-2 bash scripts/package.sh
#
# Needs cargo and dpkg-deb; uses dpkg-shlibdeps (dpkg-dev) for the libc dependency when there.
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
REPO=$PWD
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
OUT=$TARGET/debian
log() { printf 'package: %s\n' "$*" >&2; }

for tool in cargo dpkg-deb dpkg gzip; do
  command -v "$tool" >/dev/null 2>&1 || { log "$tool not found"; exit 1; }
done

VERSION=${HUSK_DEB_VERSION:-$(awk -F'"' '/^\[workspace.package\]/ {p=1} p && /^version *=/ {print $2; exit}' Cargo.toml)}
[ -n "$VERSION" ] || { log "no version in Cargo.toml's [workspace.package]"; exit 1; }
ARCH=$(dpkg --print-architecture)

# Run from `cargo test` (crates/huskd/tests/package.rs), this inherits the test's CARGO_PKG_*,
# CARGO_MANIFEST_DIR, OUT_DIR…: build scripts that watch those (ring's does) would rerun and
# rebuild half the tree, and again at the next plain build. Cargo's own settings stay.
for v in $(compgen -e); do
  case $v in
    CARGO|CARGO_PKG_*|CARGO_MANIFEST_*|CARGO_CRATE_*|CARGO_BIN_*|CARGO_PRIMARY_PACKAGE|\
    CARGO_TARGET_TMPDIR|CARGO_RUSTC_CURRENT_DIR|OUT_DIR) unset "$v" ;;
  esac
done
log "building huskd, husk-monitor and huskctl (release)"
cargo build --release -p huskd -p husk-monitor -p huskctl >&2   # as conformance.sh: one build serves both
BIN=$TARGET/release
for b in huskd husk-monitor huskctl; do
  [ -x "$BIN/$b" ] || { log "$BIN/$b was not built"; exit 1; }
done

STAGE=$OUT/stage
WORK=$OUT/work
rm -rf "$STAGE" "$WORK"
mkdir -p "$STAGE/DEBIAN" "$WORK"

# Binaries, without their line tables (symbols stay, for backtraces).
install -d -m 0755 "$STAGE/usr/bin"
for b in huskd husk-monitor huskctl; do
  install -m 0755 "$BIN/$b" "$STAGE/usr/bin/$b"
  if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-debug "$STAGE/usr/bin/$b"
  fi
done

install -D -m 0644 packaging/husk.service "$STAGE/usr/lib/systemd/system/husk.service"

install -d -m 0755 "$STAGE/etc/husk" "$STAGE/etc/husk/certs.d"
"$BIN/huskd" config default >"$STAGE/etc/husk/config.toml"
chmod 0644 "$STAGE/etc/husk/config.toml"
"$BIN/huskd" config check "$STAGE/etc/husk/config.toml" >&2

# Completions and man pages from the clap definitions (each binary's hidden __generate-docs).
"$BIN/huskd" __generate-docs "$WORK/huskd"
docs=("$WORK/huskd:8")
if "$BIN/huskctl" __generate-docs "$WORK/huskctl" >/dev/null 2>&1; then
  docs+=("$WORK/huskctl:1")
else
  log "WARNING: huskctl has no __generate-docs command: its completions and man pages are left out"
fi
for d in "${docs[@]}"; do
  dir=${d%:*} section=${d##*:} name=$(basename "${d%:*}")
  install -D -m 0644 "$dir/completions/$name.bash" "$STAGE/usr/share/bash-completion/completions/$name"
  install -D -m 0644 "$dir/completions/_$name" "$STAGE/usr/share/zsh/vendor-completions/_$name"
  install -D -m 0644 "$dir/completions/$name.fish" "$STAGE/usr/share/fish/vendor_completions.d/$name.fish"
  install -d -m 0755 "$STAGE/usr/share/man/man$section"
  for page in "$dir"/man/*."$section"; do
    gzip -9n <"$page" >"$STAGE/usr/share/man/man$section/$(basename "$page").gz"
  done
done

install -d -m 0755 "$STAGE/usr/share/doc/husk"
install -m 0644 packaging/debian/copyright README.md "$STAGE/usr/share/doc/husk/"
for f in docs/*.md; do
  [ -e "$f" ] && install -m 0644 "$f" "$STAGE/usr/share/doc/husk/"
done

# The libc and libgcc versions the binaries need.
SHLIBS='libc6, libgcc-s1'
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  mkdir -p "$WORK/shlibs/debian"
  printf 'Source: husk\n\nPackage: husk\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
  if found=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "$STAGE"/usr/bin/* 2>/dev/null); then
    found=$(sed -n 's/^shlibs:Depends=//p' <<<"$found")
    [ -n "$found" ] && SHLIBS=$found
  fi
fi

for s in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$s" "$STAGE/DEBIAN/$s"
done
echo /etc/husk/config.toml >"$STAGE/DEBIAN/conffiles"
(cd "$STAGE" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$SIZE/" \
    -e "s/@SHLIBS@/$SHLIBS/" packaging/debian/control.in >"$STAGE/DEBIAN/control"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

DEB=$OUT/husk_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >&2
rm -rf "$STAGE" "$WORK"
log "built $(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version): $(du -h "$DEB" | cut -f1)"
echo "$DEB"
