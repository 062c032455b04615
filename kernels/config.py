"""The kernels' Numba on-disk cache (every kernel is `@njit(cache=True)`, so the CLI's second run
does not recompile) and a guard against stale cache files.

Numba keys a cached function on its own source file only, so machine code that inlined a helper
from another kernels module survives edits to that helper (and a changed StructRef layout would
then read the wrong fields). `guard_cache` therefore stamps the cache directory with a hash of all
kernel sources and drops the kernels' cache files when it changes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba import config

STAMP_NAME = "wattsched-kernels.stamp"


def sources_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def guard_cache(dispatcher) -> None:
    """Drop the kernels' Numba cache files when any kernel source changed since they were made."""
    if config.DISABLE_JIT:
        return
    try:
        cache_dir = Path(dispatcher._cache._cache_path)
    except AttributeError:  # no cache for this dispatcher
        return
    stamp = cache_dir / STAMP_NAME
    want = sources_hash()
    try:
        if stamp.read_text() == want:
            return
    except OSError:
        pass
    modules = {p.stem for p in Path(__file__).parent.glob("*.py")}
    try:
        for f in cache_dir.iterdir():
            if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in modules:
                f.unlink(missing_ok=True)
        stamp.write_text(want)
    except OSError:     # read-only install: Numba then compiles in memory
        pass
