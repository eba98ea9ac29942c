#!/usr/bin/env bash
# Build (once) the cached Debian 12 arm64 root that `make pi-check` copies for each run.
#
#   deploy/raspberry-pi/pi-root.sh CACHE_DIR
#
# Writes CACHE_DIR/pi-root: debootstrap minbase for arm64 (run under qemu-user-static
# through binfmt_misc), plus the Debian packages install.sh asks for that Debian has, so
# a second run of pi-check does not download or unpack them again. Built in a sibling
# directory and renamed into place only when complete.
set -euo pipefail

readonly CACHE="${1:?usage: pi-root.sh CACHE_DIR}"
readonly ROOT="${CACHE}/pi-root"
readonly MIRROR="${PI_CHECK_MIRROR:-http://deb.debian.org/debian}"
# install.sh's packages that Debian 12 has (python3-picamera2 and python3-lgpio are
# Raspberry Pi OS's own; pi-check stands in for them), and systemd for systemctl.
readonly EXTRA=(python3 python3-venv python3-pip python3-gpiozero age ffmpeg systemd
  ca-certificates)

if [[ -f "${ROOT}/.pi-root-complete" ]]; then
  echo "==> cached arm64 root ${ROOT}"
  exit 0
fi
mkdir -p "${CACHE}"
building="${CACHE}/pi-root.building"
rm -rf -- "${building}"
echo "==> debootstrap Debian 12 arm64 into ${building} (slow under qemu: many minutes)"
debootstrap --arch=arm64 --variant=minbase bookworm "${building}" "${MIRROR}"
echo "==> installing ${EXTRA[*]} in the arm64 root"
chroot "${building}" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${EXTRA[@]}"
chroot "${building}" apt-get clean
date -u +%FT%TZ >"${building}/.pi-root-complete"
rm -rf -- "${ROOT}"
mv "${building}" "${ROOT}"
echo "==> arm64 root ready: ${ROOT}"
