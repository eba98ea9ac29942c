#!/usr/bin/env bash
# Install the sealed-doorbell agent on 64-bit Raspberry Pi OS (Bookworm or Trixie).
#
#   sudo deploy/raspberry-pi/install.sh --bundle /path/to/<device>.tar
#   sudo deploy/raspberry-pi/install.sh --bundle /path/to/bundle-directory
#   sudo deploy/raspberry-pi/install.sh            # upgrade an installed doorbell
#
# The bundle is what `cloud-stub devices enroll` wrote for this device (a directory, or
# a tarball made with --tar). Run from a checkout of this repository on the Pi. Every
# step checks before it acts, so running the script again is safe: it upgrades the
# agent from the checkout and leaves an existing /etc/doorbell/agent.toml alone.
#
# What it does, in order (docs/raspberry-pi.md explains each step and how to check it):
#   1. checks the bundle, the platform and that it runs as root (changes nothing yet);
#   2. installs system packages (picamera2 and libcamera from Raspberry Pi OS, age, ffmpeg)
#      and checks that picamera2 is at least ${PICAMERA2_FLOOR};
#   3. creates the `doorbell` system user (groups video, gpio) and /var/lib/doorbell;
#   4. creates a venv with --system-site-packages (picamera2 and libcamera only exist
#      as system packages) and installs the agent with the `pi` extra from the checkout;
#   5. installs the bundle into /etc/doorbell (keys 0600, owned by doorbell) and the
#      agent configuration, switched to the Pi camera and the GPIO button;
#   6. installs and starts the hardened systemd unit.

set -euo pipefail

readonly PREFIX=/opt/sealed-doorbell
readonly VENV="${PREFIX}/venv"
readonly SHARE="${PREFIX}/share"
readonly ETC=/etc/doorbell
readonly STATE=/var/lib/doorbell
readonly UNIT_DIR=/etc/systemd/system
readonly SERVICE_USER=doorbell
readonly PACKAGES=(python3 python3-venv python3-pip python3-picamera2 python3-gpiozero
  python3-lgpio age ffmpeg)
# The oldest picamera2 the agent supports (docs/adr/0018-pi-libraries-checked-upstream.md):
# capture_request(wait=<seconds>) and cancel_all_and_flush from 0.3.20; the V4L2 encoder
# releases its requests from 0.3.23; PyAV 12+ (the venv's, from PyPI, shadows Debian's
# python3-av) works with the libav encoder from 0.3.24; the V4L2 encoder no longer locks
# up on a frame without packets from 0.3.26.
readonly PICAMERA2_FLOOR=0.3.26
readonly PRIVATE_FILES=(identity.key transport.key mqtt.key)
readonly PUBLIC_FILES=(device-id identity.pub transport.pub mqtt.pem ca.pem trust-root.json
  escrow.pub owner.pub)

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE=""
REPLACE_BUNDLE=0
START=1
WORK=""

say() { printf '==> %s\n' "$*"; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<USAGE
usage: sudo $0 [--bundle PATH] [--source DIR] [--replace-bundle] [--no-start]

  --bundle PATH      the device bundle from 'cloud-stub devices enroll' (directory or .tar);
                     needed for the first install, optional for an upgrade
  --source DIR       the sealed-doorbell checkout to install from (default: ${SOURCE})
  --replace-bundle   install a bundle for a different device id than the one installed
  --no-start         install everything but do not enable or start the service
USAGE
}

cleanup() {
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    rm -rf -- "${WORK}"
  fi
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      --bundle)
        [[ $# -ge 2 ]] || die "--bundle needs a path"
        BUNDLE="$2"
        shift 2
        ;;
      --source)
        [[ $# -ge 2 ]] || die "--source needs a directory"
        SOURCE="$2"
        shift 2
        ;;
      --replace-bundle)
        REPLACE_BUNDLE=1
        shift
        ;;
      --no-start)
        START=0
        shift
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
  done
  if [[ -z "${BUNDLE}" && ! -f "${ETC}/device-id" ]]; then
    usage >&2
    die "--bundle is required for the first install"
  fi
}

# Unpack a tarball bundle into the private ${WORK} directory; print the bundle directory.
open_bundle() {
  if [[ -d "${BUNDLE}" ]]; then
    printf '%s\n' "${BUNDLE}"
    return
  fi
  [[ -f "${BUNDLE}" ]] || die "bundle ${BUNDLE} does not exist"
  tar --extract --file "${BUNDLE}" --directory "${WORK}" --no-same-owner \
    || die "bundle ${BUNDLE} is not a readable tar archive"
  local tops=("${WORK}"/*)
  [[ ${#tops[@]} -eq 1 && -d "${tops[0]}" ]] \
    || die "bundle ${BUNDLE} must hold exactly one top-level directory"
  printf '%s\n' "${tops[0]}"
}

check_bundle() {
  local dir="$1" name
  for name in "${PRIVATE_FILES[@]}" "${PUBLIC_FILES[@]}" agent.toml; do
    [[ -f "${dir}/${name}" && ! -L "${dir}/${name}" ]] \
      || die "bundle ${BUNDLE} lacks ${name}: is it a device bundle from 'cloud-stub devices enroll'?"
  done
  local device
  device="$(tr -d '[:space:]' <"${dir}/device-id")"
  [[ "${device}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] \
    || die "bundle ${BUNDLE}: device-id '${device}' is not a valid device id"
  grep -q '^AGE-SECRET-KEY-1' "${dir}/transport.key" \
    || die "bundle ${BUNDLE}: transport.key is not an age identity"
  grep -q 'PRIVATE KEY' "${dir}/identity.key" \
    || die "bundle ${BUNDLE}: identity.key is not a PEM private key"
  if [[ -f "${ETC}/device-id" && "${REPLACE_BUNDLE}" -eq 0 ]]; then
    local installed
    installed="$(tr -d '[:space:]' <"${ETC}/device-id")"
    [[ "${installed}" == "${device}" ]] \
      || die "this Pi is enrolled as '${installed}', the bundle is for '${device}'; use --replace-bundle to switch"
  fi
  printf '%s\n' "${device}"
}

check_platform() {
  local arch codename=""
  # The userland's architecture, not the kernel's: a 32-bit image on a Pi 4 or 5 boots a
  # 64-bit kernel, and there `uname -m` says aarch64.
  arch="$(dpkg --print-architecture 2>/dev/null || echo unknown)"
  [[ "${arch}" == "arm64" ]] \
    || die "needs 64-bit Raspberry Pi OS (arm64); this system's packages are ${arch} (kernel $(uname -m))"
  if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
  fi
  case "${codename}" in
    bookworm | trixie) ;;
    *) die "needs Raspberry Pi OS Bookworm or Trixie; this system is '${codename:-unknown}'" ;;
  esac
  [[ "$(id -u)" -eq 0 ]] || die "run as root (sudo)"
  [[ -f "${SOURCE}/pyproject.toml" && -d "${SOURCE}/device" ]] \
    || die "${SOURCE} is not a sealed-doorbell checkout (use --source)"
  printf '%s\n' "${codename}"
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("${pkg}")
  done
  if ((${#missing[@]} == 0)); then
    say "system packages already installed"
    return
  fi
  say "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

check_picamera2() {
  local version
  version="$(dpkg-query -W -f='${Version}' python3-picamera2 2>/dev/null)" \
    || die "python3-picamera2 is not installed"
  dpkg --compare-versions "${version}" ge "${PICAMERA2_FLOOR}" \
    || die "python3-picamera2 ${version} is older than ${PICAMERA2_FLOOR}, the oldest this agent supports: run 'sudo apt update && sudo apt full-upgrade' and try again"
  say "python3-picamera2 ${version} (at least ${PICAMERA2_FLOOR})"
}

create_user() {
  if id -u "${SERVICE_USER}" >/dev/null 2>&1; then
    say "user ${SERVICE_USER} exists"
  else
    say "creating system user ${SERVICE_USER}"
    useradd --system --user-group --home-dir "${STATE}" --no-create-home \
      --shell /usr/sbin/nologin --comment "sealed-doorbell agent" "${SERVICE_USER}"
  fi
  local group
  for group in video gpio; do
    if getent group "${group}" >/dev/null; then
      usermod --append --groups "${group}" "${SERVICE_USER}"
    else
      say "warning: group ${group} does not exist; camera or GPIO access may fail"
    fi
  done
  install -d -m 0700 -o "${SERVICE_USER}" -g "${SERVICE_USER}" "${STATE}"
}

install_agent() {
  local codename="$1"
  if [[ ! -x "${VENV}/bin/python" ]]; then
    say "creating ${VENV} (with system site packages, for picamera2 and libcamera)"
    install -d -m 0755 "${PREFIX}"
    python3 -m venv --system-site-packages "${VENV}"
  fi
  local constraints="${PREFIX}/constraints.txt"
  if [[ "${codename}" == "bookworm" ]]; then
    # Bookworm's simplejpeg and other picamera2 dependencies are built against NumPy
    # 1.x; a NumPy 2 in the venv would shadow the system one and break their import.
    printf 'numpy<2\n' >"${constraints}"
  else
    : >"${constraints}"
  fi
  say "installing the agent from ${SOURCE} with the pi extra"
  "${VENV}/bin/pip" install --quiet --upgrade pip
  "${VENV}/bin/pip" install --quiet --upgrade --constraint "${constraints}" "${SOURCE}[pi]"
  check_imports
  drop_written_libraries
  install -d -m 0755 "${SHARE}"
  install -m 0644 "${SOURCE}/docs/raspberry-pi.md" "${SHARE}/raspberry-pi.md"
}

# pip has just written the venv's shared libraries. A kernel whose ext4 keeps freshly
# written files in large folios (6.16 and later) lets the agent map them in pieces of up
# to 1 MiB until they leave the page cache: about 20 MiB more RSS than after a reboot on
# the machine where this was measured (docs/adr/0019-agent-memory-and-uplink-benchmarks.md,
# "The page-cache state"). Dropping them from the cache (written out first) makes the
# agent's first start read them back as it does after a power cut.
drop_written_libraries() {
  "${VENV}/bin/python" - "${VENV}" <<'PY' \
    || say "warning: the venv's libraries stay in the page cache as written"
import os, pathlib, sys
for path in pathlib.Path(sys.argv[1]).rglob("*"):
    if (path.suffix == ".so" or ".so." in path.name) and path.is_file() \
            and not path.is_symlink():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
PY
}

# Import picamera2, gpiozero and lgpio as the service user, in a working directory of
# its own with LG_WD set, as the unit runs the agent: lgpio creates its notification
# pipe there at import time (docs/raspberry-pi.md, "The service's working directory").
check_imports() {
  local probe status=0
  probe="$(mktemp -d)"
  chown "${SERVICE_USER}:${SERVICE_USER}" "${probe}"
  (cd "${probe}" && runuser -u "${SERVICE_USER}" -- env -i PATH=/usr/bin:/bin LG_WD="${probe}" \
    "${VENV}/bin/python" -c 'import picamera2, gpiozero, lgpio') || status=$?
  rm -rf -- "${probe}"
  ((status == 0)) \
    || die "picamera2, gpiozero or lgpio cannot be imported by ${SERVICE_USER} from ${VENV}; see docs/raspberry-pi.md"
}

install_bundle() {
  local dir="$1" name
  say "installing the device bundle into ${ETC}"
  install -d -m 0750 -o root -g "${SERVICE_USER}" "${ETC}"
  for name in "${PRIVATE_FILES[@]}"; do
    install -m 0600 -o "${SERVICE_USER}" -g "${SERVICE_USER}" "${dir}/${name}" "${ETC}/${name}"
  done
  for name in "${PUBLIC_FILES[@]}"; do
    install -m 0644 -o root -g root "${dir}/${name}" "${ETC}/${name}"
  done
  install -m 0644 -o root -g root "${dir}/agent.toml" "${ETC}/agent.toml.bundle"
}

install_config() {
  local config="${ETC}/agent.toml"
  if [[ -f "${config}" ]]; then
    say "keeping the existing ${config} (the bundle's is in ${config}.bundle)"
  else
    say "writing ${config} for the Pi camera and the GPIO button"
    local staged
    staged="$(mktemp "${ETC}/.agent.toml.XXXXXX")"
    {
      cat "${ETC}/agent.toml.bundle"
      grep -q '^\[camera\]' "${ETC}/agent.toml.bundle" \
        || printf '\n[camera]\nsource = "pi"\n'
      grep -q '^\[button\]' "${ETC}/agent.toml.bundle" \
        || printf '\n[button]\nkind = "gpio"\npin = 17\npull_up = true\n'
    } >"${staged}"
    chown root:"${SERVICE_USER}" "${staged}"
    chmod 0640 "${staged}"
    mv -f "${staged}" "${config}"
  fi
  "${VENV}/bin/python" -c 'import sys; from pathlib import Path; from device.config import load_config; load_config(Path(sys.argv[1]))' "${config}" \
    || die "${config} does not load; fix the key it names and run again"
}

install_unit() {
  say "installing the systemd unit"
  install -m 0644 "${SOURCE}/deploy/systemd/doorbell-agent.service" \
    "${UNIT_DIR}/doorbell-agent.service"
  if [[ ! -d /run/systemd/system ]]; then
    # No running systemd (an image being prepared in a chroot): enabling only makes the
    # boot-time links; the agent starts at the next boot.
    if ((START == 1)); then
      systemctl enable doorbell-agent.service
      say "systemd is not running here: enabled, it starts at the next boot"
    else
      say "systemd is not running here: installed; enable with: sudo systemctl enable doorbell-agent"
    fi
    return
  fi
  systemctl daemon-reload
  if ((START == 1)); then
    systemctl enable doorbell-agent.service
    systemctl restart doorbell-agent.service
    say "started; check with: systemctl status doorbell-agent"
  else
    say "installed; start with: sudo systemctl enable --now doorbell-agent"
  fi
}

main() {
  parse_args "$@"
  trap cleanup EXIT
  WORK="$(mktemp -d)"
  chmod 0700 "${WORK}"
  local dir="" device codename
  if [[ -n "${BUNDLE}" ]]; then
    dir="$(open_bundle)"
    device="$(check_bundle "${dir}")"
    codename="$(check_platform)"
  else
    codename="$(check_platform)"
    device="$(tr -d '[:space:]' <"${ETC}/device-id")"
    say "upgrading the installed device ${device}; its bundle and config stay as they are"
  fi
  say "installing sealed-doorbell for device ${device} on Raspberry Pi OS ${codename}"
  install_packages
  check_picamera2
  create_user
  install_agent "${codename}"
  if [[ -n "${dir}" ]]; then
    install_bundle "${dir}"
  fi
  install_config
  install_unit
  say "done: device ${device} is installed"
}

# Sourced (by its tests) it only defines its functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
