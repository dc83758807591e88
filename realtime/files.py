"""Where the project keeps its generated files, and their modes.

Outputs written through a temporary file get the permissions a plain ``open()`` would give: ``tempfile.mkstemp``
and safetensors create files 0600 whatever the umask, so a report or checkpoint meant to be shared would be readable
by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_dir(env_var: str, name: str) -> Path:
    """$``env_var``, else ``name/`` of a source checkout, else ``~/.cache/realtime-gym/name``."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file():
        return repo / name
    return Path.home() / ".cache" / "realtime-gym" / name


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """What ``open(path, "w")`` creates: 0666 minus the umask (0644 under the usual 022)."""
    return 0o666 & ~current_umask()


def honour_umask(path: str | Path | int) -> None:
    """Give a file (path or open descriptor) the mode ``open()`` would have given it."""
    if isinstance(path, int):
        os.fchmod(path, default_file_mode())
    else:
        os.chmod(path, default_file_mode())


__all__ = ["current_umask", "default_file_mode", "honour_umask"]
