"""Where imgcls keeps what it derives or downloads: torch-free, so a prediction that needs no
torch can find its cached files."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where downloads go when no --data-dir is given (respects XDG_CACHE_HOME)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgcls"
