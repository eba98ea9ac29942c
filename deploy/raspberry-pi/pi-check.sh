#!/usr/bin/env bash
# `make pi-check`: install the doorbell into a Debian 12 arm64 root under qemu and run it.
#
#   sudo deploy/raspberry-pi/pi-check.sh [CACHE_DIR]   (default /var/cache/sealed-doorbell)
#
# What it does (docs/raspberry-pi.md, "Checking the Pi path on arm64", says what this
# proves and what it cannot):
#   1. mounts binfmt_misc and installs qemu-user-static, binfmt-support and debootstrap
#      (apt only when missing), so arm64 programs run through qemu;
#   2. builds, once, a Debian 12 arm64 root in CACHE_DIR/pi-root (pi-root.sh), then
#      copies it to CACHE_DIR/pi-work for this run: every run is a first install;
#   3. stands in for the two Raspberry Pi OS packages Debian lacks, as local .debs
#      installed with dpkg: python3-lgpio holds the real lgpio 0.2.2.0 (PyPI's aarch64
#      wheel); python3-picamera2 holds tests/standins/picamera2 (no libcamera here);
#   4. enrolls a device with this checkout's cloud-stub and runs install.sh --no-start
#      in the root, from a copy of this checkout;
#   5. as the `doorbell` user, with the unit's WorkingDirectory, Environment and UMask:
#      imports lgpio and starts the GPIO button (it must get past lgpio's pipe to "no
#      GPIO header"), runs `doorbell-agent simulate` on the visitor scene and checks a
#      sealed clip decrypts on this machine with the owner's key, and runs
#      `doorbell-agent token verify` on the shared test vectors (one accepted, one
#      rejected); then `doorbell-agent run` (picamera2 stand-in, gpiozero's MockFactory)
#      must send READY=1 to a notify socket, and STOPPING=1 on SIGTERM.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${HERE}/../.." && pwd)"
readonly HERE REPO
readonly CACHE="${1:-/var/cache/sealed-doorbell}"
readonly WORK="${CACHE}/pi-work"
readonly HOST_BIN="${PI_CHECK_BIN:-${REPO}/.venv/bin}"
readonly UNIT="${REPO}/deploy/systemd/doorbell-agent.service"
readonly LGPIO_VERSION=0.2.2.0
readonly PICAMERA2_STANDIN_VERSION=0.3.36
STARTED=$(date +%s)
MOUNTS=()
SCRATCH=""
EXTRA_ENV=()

say() { printf '==> pi-check: %s (%ds)\n' "$*" "$(($(date +%s) - STARTED))"; }
die() {
  printf 'pi-check: %s\n' "$*" >&2
  exit 1
}

cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  if [[ -n "${SCRATCH}" ]]; then
    rm -rf -- "${SCRATCH}"
  fi
}

host_tools() {
  [[ "$(id -u)" -eq 0 ]] || die "run as root (it mounts binfmt_misc and chroots)"
  [[ -x "${HOST_BIN}/cloud-stub" ]] || die "${HOST_BIN}/cloud-stub missing: run make setup"
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  local missing=()
  [[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P || -x /usr/bin/qemu-aarch64-static ]] \
    || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v dpkg-deb >/dev/null || missing+=(dpkg)
  command -v age-keygen >/dev/null || missing+=(age)
  if ((${#missing[@]} > 0)); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    # qemu-user-static registers its formats through binfmt-support or systemd-binfmt;
    # on a machine where neither ran since binfmt_misc was mounted, register it now.
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-aarch64 || true
  fi
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || die "arm64 binaries cannot run: /proc/sys/fs/binfmt_misc/qemu-aarch64 is not enabled"
}

fresh_root() {
  "${HERE}/pi-root.sh" "${CACHE}"
  say "copying the cached root to ${WORK}"
  rm -rf -- "${WORK}"
  cp -a "${CACHE}/pi-root" "${WORK}"
  mount_root
}

mount_root() {
  local point
  mkdir -p "${CACHE}/pip" "${WORK}/root/.cache/pip"
  for point in proc dev dev/pts sys root/.cache/pip; do
    case "${point}" in
      proc) mount -t proc proc "${WORK}/proc" ;;
      sys) mount -t sysfs sysfs "${WORK}/sys" ;;
      dev) mount -t tmpfs -o mode=0755 tmpfs "${WORK}/dev" && populate_dev ;;
      dev/pts) mkdir -p "${WORK}/dev/pts" && mount -t devpts devpts "${WORK}/dev/pts" ;;
      root/.cache/pip) mount --bind "${CACHE}/pip" "${WORK}/root/.cache/pip" ;;
    esac
    MOUNTS+=("${WORK}/${point}")
  done
  mount -t tmpfs -o mode=0755 tmpfs "${WORK}/run"
  MOUNTS+=("${WORK}/run")
  cp -L /etc/resolv.conf "${WORK}/etc/resolv.conf"
}

# A /dev like a Pi's minus the hardware: no gpiochip, no video, no gpiomem.
populate_dev() {
  local node
  for node in null zero full random urandom tty; do
    touch "${WORK}/dev/${node}"
    mount --bind "/dev/${node}" "${WORK}/dev/${node}"
    MOUNTS+=("${WORK}/dev/${node}")
  done
  ln -s /proc/self/fd "${WORK}/dev/fd"
  mkdir -p "${WORK}/dev/shm"
}

# Programs in the root see only a plain environment (the host's pip settings and paths
# mean nothing there), plus the host's proxy settings if it has any.
in_root() {
  local keep=() name
  for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [[ -n "${!name:-}" ]]; then
      keep+=("${name}=${!name}")
    fi
  done
  chroot "${WORK}" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "${keep[@]}" "$@"
}

# A host behind a TLS-inspecting proxy trusts extra certificate authorities; the root
# needs them too to reach PyPI.
host_certificates() {
  local extra=(/usr/local/share/ca-certificates/*.crt)
  [[ -e "${extra[0]}" ]] || return 0
  say "trusting the host's extra certificate authorities in the root"
  # Appended to the bundle directly: update-ca-certificates under qemu takes minutes.
  cat "${extra[@]}" >>"${WORK}/etc/ssl/certs/ca-certificates.crt"
}

standin_debs() {
  say "building the stand-in python3-lgpio and python3-picamera2 packages"
  local debs="${SCRATCH}/debs"
  mkdir -p "${debs}"
  "${HOST_BIN}/pip" download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_34_aarch64 --python-version 3.11 \
    "lgpio==${LGPIO_VERSION}" -d "${SCRATCH}/wheel"
  local pkg="${SCRATCH}/python3-lgpio"
  mkdir -p "${pkg}/DEBIAN" "${pkg}/usr/lib/python3/dist-packages"
  (cd "${pkg}/usr/lib/python3/dist-packages" && python3 -m zipfile -e "${SCRATCH}"/wheel/lgpio-*.whl .)
  control "${pkg}" python3-lgpio "${LGPIO_VERSION}-0standin1" arm64 \
    "lgpio ${LGPIO_VERSION} from PyPI's aarch64 wheel, standing in for Raspberry Pi OS's python3-lgpio"
  dpkg-deb --root-owner-group --build "${pkg}" "${debs}/python3-lgpio.deb" >/dev/null

  pkg="${SCRATCH}/python3-picamera2"
  mkdir -p "${pkg}/DEBIAN" "${pkg}/usr/lib/python3/dist-packages"
  cp -r "${REPO}/tests/standins/picamera2" "${pkg}/usr/lib/python3/dist-packages/picamera2"
  find "${pkg}" -name __pycache__ -prune -exec rm -rf {} +
  # Debian's python3-* packages carry their metadata, so pip sees the floor is met.
  local meta="${pkg}/usr/lib/python3/dist-packages/picamera2-${PICAMERA2_STANDIN_VERSION}.dist-info"
  mkdir -p "${meta}"
  printf 'Metadata-Version: 2.1\nName: picamera2\nVersion: %s\n' \
    "${PICAMERA2_STANDIN_VERSION}" >"${meta}/METADATA"
  control "${pkg}" python3-picamera2 "${PICAMERA2_STANDIN_VERSION}-0standin1" all \
    "sealed-doorbell's test stand-in for picamera2 (no libcamera): NOT Raspberry Pi's package"
  dpkg-deb --root-owner-group --build "${pkg}" "${debs}/python3-picamera2.deb" >/dev/null
  cp "${debs}"/*.deb "${WORK}/tmp/"
  in_root dpkg -i /tmp/python3-lgpio.deb /tmp/python3-picamera2.deb >/dev/null
  rm -f "${WORK}"/tmp/python3-*.deb
}

control() {
  local dir="$1" name="$2" version="$3" arch="$4" text="$5"
  cat >"${dir}/DEBIAN/control" <<CONTROL
Package: ${name}
Version: ${version}
Architecture: ${arch}
Maintainer: sealed-doorbell pi-check <root@localhost>
Section: python
Priority: optional
Description: ${text}
 Built by deploy/raspberry-pi/pi-check.sh for a Debian 12 arm64 test root only.
CONTROL
}

enroll_and_install() {
  say "enrolling device 'porch' with this checkout's cloud-stub"
  age-keygen -o "${SCRATCH}/owner.key" 2>/dev/null
  local recipient
  recipient="$(age-keygen -y "${SCRATCH}/owner.key")"
  "${HOST_BIN}/cloud-stub" init "${SCRATCH}/deployment" >/dev/null
  "${HOST_BIN}/cloud-stub" devices enroll porch --owner-recipient "${recipient}" \
    --deployment "${SCRATCH}/deployment" --tar "${SCRATCH}/porch.tar" >/dev/null
  cp "${SCRATCH}/porch.tar" "${WORK}/root/porch.tar"
  say "copying this checkout (tracked and new files) to /root/sealed-doorbell in the root"
  mkdir -p "${WORK}/root/sealed-doorbell"
  (cd "${REPO}" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) \
    | tar -xf - -C "${WORK}/root/sealed-doorbell"
  say "running install.sh in the arm64 root (pip under qemu: several minutes the first time)"
  in_root /root/sealed-doorbell/deploy/raspberry-pi/install.sh \
    --bundle /root/porch.tar --no-start
}

# The unit's WorkingDirectory, Environment= lines and UMask, read from the unit itself.
unit_value() { sed -n "s/^$1=//p" "${UNIT}" | tail -n 1; }

as_service() {
  local cwd umask envs=()
  cwd="$(unit_value WorkingDirectory)"
  umask="$(unit_value UMask)"
  mapfile -t envs < <(sed -n 's/^Environment=//p' "${UNIT}")
  # systemd creates the RuntimeDirectory (0700, owned by User=) before it starts the unit.
  in_root install -d -m "$(unit_value RuntimeDirectoryMode)" -o doorbell -g doorbell \
    "/run/$(unit_value RuntimeDirectory)"
  in_root runuser -u doorbell -- env -i PATH=/usr/bin:/bin HOME=/var/lib/doorbell \
    "${envs[@]}" "${EXTRA_ENV[@]}" sh -c "umask ${umask} && cd '${cwd}' && exec \"\$@\"" sh "$@"
}

run_checks() {
  local venv=/opt/sealed-doorbell/venv out
  say "as doorbell under the unit's conditions: lgpio's pipe, then the GPIO button"
  as_service "${venv}/bin/python" -c 'import lgpio, os; print("lgpio imported in", os.getcwd())'
  out="$(as_service "${venv}/bin/python" -c '
from datetime import UTC, datetime
from device.button.base import ButtonError
from device.button.factory import make_button
from device.config import ButtonSettings
from device.clock import ManualClock
try:
    make_button(ButtonSettings(kind="gpio"), ManualClock(datetime.now(UTC))).start(print)
except ButtonError as exc:
    print(exc)
')"
  printf '    %s\n' "${out}"
  [[ "${out}" == *"no GPIO header found (no /dev/gpiochip*)"* ]] \
    || die "the button did not get past lgpio to the missing header: ${out}"

  say "as doorbell: doorbell-agent simulate --scene visitor (sealed on arm64)"
  out="$(as_service "${venv}/bin/doorbell-agent" --config /etc/doorbell/agent.toml \
    simulate --scene visitor --duration 12 --fast --start 2026-05-04T09:30:00Z | tail -n 1)"
  printf '    %s\n' "${out}"
  python3 -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(0 if s["clips_sealed"] >= 1 and s["clips_failed"] == 0 else 1)' "${out}" \
    || die "simulate sealed no clip: ${out}"
  local clip
  clip="$(find "${WORK}/var/lib/doorbell" -name '*.age' -type f | head -n 1)"
  [[ -n "${clip}" ]] || die "no sealed clip under /var/lib/doorbell"
  age -d -i "${SCRATCH}/owner.key" -o "${SCRATCH}/clip.mp4" "${clip}" \
    || die "the arm64 clip ${clip} does not decrypt with the owner's key here"
  local frames
  frames="$(ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=codec_name,nb_read_frames -of csv=p=0 "${SCRATCH}/clip.mp4")"
  say "the owner decrypts it on this machine: ${frames} (codec, frames)"
  [[ "${frames}" == h264,* ]] || die "the decrypted clip is not H.264: ${frames}"

  say "as doorbell: doorbell-agent token verify on the shared vectors"
  python3 - "${REPO}/tests/vectors" "${WORK}/tmp" <<'PY'
import base64, json, pathlib, sys
vectors = pathlib.Path(sys.argv[1])
data = json.loads((vectors / "vectors.json").read_text())
out = pathlib.Path(sys.argv[2])
(out / "trust-root.json").write_bytes((vectors / data["trust_root"]).read_bytes())
for token in data["tokens"]:
    if token["name"] in ("valid-warrant", "bad-signature-forged-kid"):
        (out / f"{token['name']}.json").write_bytes(base64.b64decode(token["token_b64"]))
        (out / f"{token['name']}.args").write_text(
            f"{token['context']['device_id']} {token['context']['now']}\n")
PY
  chmod 0644 "${WORK}"/tmp/*.json
  local name device now status
  for name in valid-warrant bad-signature-forged-kid; do
    read -r device now <"${WORK}/tmp/${name}.args"
    status=0
    out="$(as_service "${venv}/bin/doorbell-agent" token verify "/tmp/${name}.json" \
      --trust-root /tmp/trust-root.json --device "${device}" --now "${now}")" || status=$?
    printf '    %s: exit %d %s\n' "${name}" "${status}" "${out}"
    case "${name}:${status}" in
      valid-warrant:0 | bad-signature-forged-kid:1) ;;
      *) die "token verify gave exit ${status} for ${name}" ;;
    esac
  done
}

# `doorbell-agent run` as the unit starts it, with a notify socket bound here: it must
# send READY=1, then STOPPING=1 on SIGTERM. The camera is the picamera2 stand-in (the
# installed configuration's source = "pi"); gpiozero's MockFactory stands in for the
# header this root has not.
run_until_ready() {
  local sock="${WORK}/run/notify.sock" got="${SCRATCH}/notify.txt" listener agent
  say "as doorbell: doorbell-agent run under the unit's conditions, until READY=1"
  python3 - "${sock}" "${got}" <<'PY' &
import os, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
sock.settimeout(1)
deadline = time.monotonic() + 400
with open(sys.argv[2], "w") as out:
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        out.write(data.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in data:
            break
PY
  listener=$!
  while [[ ! -S "${sock}" ]]; do sleep 0.2; done
  EXTRA_ENV=(NOTIFY_SOCKET=/run/notify.sock GPIOZERO_PIN_FACTORY=mock)
  as_service /opt/sealed-doorbell/venv/bin/doorbell-agent --config /etc/doorbell/agent.toml \
    run >"${SCRATCH}/agent.log" 2>&1 &
  agent=$!
  EXTRA_ENV=()
  local waited=0
  until grep -q 'READY=1' "${got}" 2>/dev/null; do
    if ! kill -0 "${agent}" 2>/dev/null || ((waited >= 300)); then
      tail -n 20 "${SCRATCH}/agent.log" >&2
      die "the installed agent did not reach READY=1"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  printf '    %s\n' "$(grep -m1 'READY=1' "${got}")"
  # SIGTERM to the agent itself, as systemd sends it: runuser would answer a SIGTERM of
  # its own with SIGKILL two seconds later, cutting the agent's stop short.
  local pid
  pid="$(agent_pid "${agent}")"
  [[ -n "${pid}" ]] || die "cannot find the agent's process under ${agent}"
  kill -TERM "${pid}"
  wait "${agent}" || true
  wait "${listener}" || true
  grep -q 'STOPPING=1' "${got}" || die "the agent did not send STOPPING=1 on SIGTERM"
  say "READY=1 after ${waited}s under qemu, STOPPING=1 on SIGTERM"
}

# The doorbell-agent process among the descendants of process $1 (by parent id).
agent_pid() {
  local pid child
  for child in $(ps -o pid= --ppid "$1"); do
    if ps -o args= -p "${child}" | grep -q 'python3 /opt/sealed-doorbell/venv/bin/doorbell-agent'; then
      printf '%s\n' "${child}"
      return
    fi
    pid="$(agent_pid "${child}")"
    if [[ -n "${pid}" ]]; then
      printf '%s\n' "${pid}"
      return
    fi
  done
}

main() {
  trap cleanup EXIT
  host_tools
  SCRATCH="$(mktemp -d)"
  chmod 0700 "${SCRATCH}"
  fresh_root
  in_root /usr/bin/env true || die "cannot run arm64 programs in ${WORK}"
  say "arm64 root: $(in_root dpkg --print-architecture), Debian $(cat "${WORK}/etc/debian_version")"
  host_certificates
  standin_debs
  enroll_and_install
  run_checks
  run_until_ready
  say "passed"
}

# Sourced, it only defines its functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
