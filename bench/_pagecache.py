"""The page-cache state of a virtualenv's shared libraries, for the memory benchmark.

How many of the libraries' pages the agent's RSS counts depends on how the page cache
holds them (bench/README.md, "Memory: the page-cache state"): freshly written by pip,
ext4 on recent kernels keeps them in large folios, and a fault maps a whole folio; read
back after a reboot, they come in small folios. This module makes each state (writes
the libraries anew, as pip would; drops them from the cache, as a reboot would) and
says which one a run measured:

- `library_files`: the shared libraries under a prefix (the virtualenv).
- `resident_bytes`: how many of their bytes the page cache holds (mincore(2)).
- `drop`: fdatasync and posix_fadvise(DONTNEED) on each: evicts the pages nothing maps.
- `rewrite`: writes each anew with the same bytes, as pip does when it installs: a new
  file renamed over the old one (running processes keep the old), freshly in the cache.
- `mapped_by_file`: a process's RSS per mapped file (/proc/PID/smaps).
- `large_folio_share`: of a process's mapped pages of those files, the share in folios
  larger than a page (/proc/PID/pagemap and /proc/kpageflags; root only).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import struct
from pathlib import Path

PAGE = mmap.PAGESIZE
_PRESENT = 1 << 63
_PFN_MASK = (1 << 55) - 1
_COMPOUND = (1 << 15) | (1 << 16)  # KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
_MAP_FAILED = ctypes.c_void_p(-1).value


def library_files(prefix: Path) -> list[Path]:
    """Regular files under `prefix` named like shared libraries (*.so, *.so.N)."""
    return sorted(
        path
        for path in prefix.rglob("*")
        if (path.suffix == ".so" or ".so." in path.name)
        and path.is_file()
        and not path.is_symlink()
    )


def _resident(path: Path) -> int:
    size = path.stat().st_size
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        # Mapping a file faults nothing in; mincore only reads the page cache.
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return sum(byte & 1 for byte in vec.raw) * PAGE
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def resident_bytes(files: list[Path]) -> tuple[int, int]:
    """(bytes of `files` in the page cache, their total size)."""
    return sum(_resident(path) for path in files), sum(path.stat().st_size for path in files)


def drop(files: list[Path]) -> None:
    """Evict the files' pages from the page cache; pages a process maps stay.

    Each file is written out first: dirty pages are not dropped."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def rewrite(files: list[Path]) -> None:
    """Replace each file by a fresh copy of its bytes (same mode), renamed over it."""
    for path in files:
        fresh = path.with_name(f".{path.name}.rewrite")
        try:
            fresh.write_bytes(path.read_bytes())
            shutil.copymode(path, fresh)
            os.replace(fresh, path)
        finally:
            fresh.unlink(missing_ok=True)


def mapped_by_file(pid: int) -> dict[str, int]:
    """RSS in bytes of each file `pid` maps, summed over its mappings; {} once it is gone."""
    rss: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return rss
    path = ""
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":"):  # a mapping's header line
            path = fields[5] if len(fields) > 5 and fields[5].startswith("/") else ""
        elif path and fields[0] == "Rss:":
            rss[path] = rss.get(path, 0) + int(fields[1]) * 1024
    return rss


def large_folio_share(pid: int, prefix: Path) -> float | None:
    """Share of `pid`'s mapped pages of files under `prefix` that sit in large folios.

    None when the kernel's page flags cannot be read (not root) or nothing is mapped.
    """
    under = f"{prefix.resolve()}/"
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        kpageflags = os.open("/proc/kpageflags", os.O_RDONLY)
    except OSError:
        return None
    mapped = large = 0
    try:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith(under):
                continue
            low, high = (int(bound, 16) for bound in fields[0].split("-"))
            entries = b""
            want = (high - low) // PAGE * 8
            while len(entries) < want:  # pagemap answers long reads in parts
                part = os.pread(pagemap, want - len(entries), low // PAGE * 8 + len(entries))
                if not part:
                    break
                entries += part
            for (entry,) in struct.iter_unpack("<Q", entries):
                pfn = entry & _PFN_MASK
                if not entry & _PRESENT or pfn == 0:
                    continue
                (flags,) = struct.unpack("<Q", os.pread(kpageflags, 8, pfn * 8))
                mapped += 1
                large += bool(flags & _COMPOUND)
    except OSError:
        return None
    finally:
        os.close(pagemap)
        os.close(kpageflags)
    return large / mapped if mapped else None
