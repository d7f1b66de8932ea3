"""Aftershock analytics: what happened, from exposures and interaction logs."""

from functools import cache
from hashlib import sha256
from pathlib import Path

__version__ = "0.1.0"


@cache
def code_version() -> str:
    """The release and a digest of this package's Python source, stored with every analysis:
    a stored analysis (or a report's snapshot) is reused only by the code that computed it,
    so a change to the statistics is not hidden behind an unchanged release number."""
    return f"{__version__}+{source_digest(Path(__file__).parent)}"


def source_digest(root: Path) -> str:
    """12 hex digits of SHA-256 over the ``*.py`` files under ``root``: names and contents."""
    digest = sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
