"""Writing plan and report JSON: atomically, so a crash never leaves half a file where a good one was."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def write_json(path: str, data: dict) -> None:
    """Write `data` as indented JSON to `path` ('-' = stdout) via a temporary file and a rename."""
    if path == "-":
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
