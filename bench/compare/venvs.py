"""One virtual environment per peer, built from PyPI with pinned versions (never a
dependency of Conveyor): `requirements/<peer>.txt`. A built environment is reused until its
requirements file changes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"
DEFAULT_ROOT = HERE.parents[1] / ".bench-venvs"
INSTALL_TIMEOUT_SECONDS = 900


def python_for(peer: str, root: Path = DEFAULT_ROOT) -> str:
    """The interpreter of `peer`'s environment, built or rebuilt if needed."""
    requirements = REQUIREMENTS / f"{peer}.txt"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    venv = root / peer
    stamp = venv / ".requirements-sha256"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    print(f"building the environment of {peer} in {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(requirements)],
        check=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )  # fmt: skip
    stamp.write_text(wanted)
    return str(python)
