"""Deterministic zips, and unzipping one as Lambda does.

Same files, same bytes: sorted entry names, one fixed timestamp (1980-01-01, or ``SOURCE_DATE_EPOCH``),
modes normalised to 0644/0755, maximum deflate. A zip may gather several staging directories, each under
its own prefix (a Lambda layer puts Python packages under ``python/``).
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

Entry = tuple[str, int, int]  # (name in the zip, size, compressed size)


def zip_time() -> tuple[int, int, int, int, int, int]:
    """The timestamp of every entry: ``SOURCE_DATE_EPOCH`` when set (and ≥ 1980), else 1980-01-01."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit() and int(epoch) >= 315532800:  # zip cannot store dates before 1980
        return time.gmtime(int(epoch))[:6]
    return (1980, 1, 1, 0, 0, 0)


def write_zip(target: Path, sources: Sequence[tuple[Path, str]]) -> list[Entry]:
    """Zip the files of each (directory, prefix) in ``sources`` into ``target``, deterministically.

    Returns one (name, size, compressed size) per entry, in zip order (sorted by name).
    """
    date_time = zip_time()
    files: dict[str, Path] = {}
    for root, prefix in sources:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                name = prefix + path.relative_to(root).as_posix()
                if name in files:
                    raise ValueError(f"{name} would be in the zip twice ({files[name]} and {path})")
                files[name] = path
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, path in sorted(files.items()):
            mode = path.stat().st_mode
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.create_system = 3  # unix: keep the modes below
            info.external_attr = (stat.S_IFREG | (0o755 if mode & 0o111 else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = path.stat().st_size
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=info.file_size > 2**31) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return [(info.filename, info.file_size, info.compress_size) for info in zf.infolist()]


def unpack(zip_path: str | Path, dest: str | Path) -> Path:
    """Unzip a bundle as Lambda does (into ``dest``, modes kept); return ``dest``."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)
    return dest
