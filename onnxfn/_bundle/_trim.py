"""Trimming the installed dependencies of what a Lambda never runs, and saying what went.

Whole distributions onnxruntime declares only for its offline tooling; files by rule (tests, stubs,
headers, build tools, tooling subpackages); then vendored shared libraries that no remaining binary loads,
found by reading ELF ``DT_NEEDED`` entries (a small reader below, no dependency). Each rule is proven
harmless by tests/deploy: the handler answers from the unzipped bundle in an isolated interpreter.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ._deps import canonical
from ._report import Trimmed

# Dependencies that onnxruntime declares for its offline tooling (model conversion, quantization, symbolic
# shapes, ORT format), never imported by an InferenceSession; and packages that must never be in the zip.
DROP_DISTRIBUTIONS = frozenset(
    {"protobuf", "flatbuffers", "packaging", "sympy", "mpmath", "coloredlogs", "humanfriendly", "ml-dtypes"}
)
FORBIDDEN_TOP_LEVEL = frozenset({"tensorflow", "keras", "tf2onnx", "onnx", "uvicorn", "torch"})
# (what, why, regexes over posix paths relative to the zip root). Each rule is proven harmless by
# tests/deploy (the handler answers from the unzipped bundle in an isolated interpreter).
TRIM_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bytecode caches", (r"(^|/)__pycache__/", r"\.py[co]$")),
    ("console scripts (shebangs of the build machine)", (r"^bin/",)),
    (
        "install records (importlib.metadata needs METADATA only)",
        (r"\.dist-info/(RECORD|INSTALLER|REQUESTED|direct_url\.json)$",),
    ),
    ("test suites", (r"(^|/)tests?/", r"(^|/)conftest\.py$")),
    ("type stubs, C/Cython headers, static libs", (r"\.pyi$", r"\.pxd$", r"\.a$", r"^numpy/_core/include/")),
    (
        "numpy build tools (f2py, distutils, PyInstaller hooks, Cython examples)",
        (r"^numpy/(f2py|distutils|_pyinstaller)/", r"_examples/"),
    ),
    (
        "onnxruntime offline tooling (transformers, quantization, tools, datasets, backend)",
        (r"^onnxruntime/(transformers|quantization|tools|datasets|backend)/",),
    ),
    ("Pillow modules the API never calls (AVIF, fonts, Tk)", (r"^PIL/_(avif|imagingft|imagingtk)\.",)),
)


def drop_distributions(root: Path, owners: dict[str, tuple[str, str]]) -> list[Trimmed]:
    """Remove every file of the distributions in ``DROP_DISTRIBUTIONS`` that pip installed."""
    dropped = Trimmed("onnxruntime tooling dependencies (" + ", ".join(sorted(DROP_DISTRIBUTIONS)) + ")")
    names = {canonical(n) for n, _ in owners.values() if canonical(n) in DROP_DISTRIBUTIONS}
    if not names:
        return [dropped]
    for rel, (dist, _) in list(owners.items()):
        if canonical(dist) in names:
            path = root / rel
            if path.is_file() and not path.is_symlink():
                dropped.files += 1
                dropped.bytes += path.stat().st_size
                path.unlink()
    remove_empty_dirs(root)
    dropped.what = "onnxruntime tooling dependencies: " + ", ".join(sorted(names))
    return [dropped]


def trim(root: Path) -> list[Trimmed]:
    """Apply ``TRIM_RULES`` to the dependencies in ``root`` (the first matching rule counts a file)."""
    rules = [(Trimmed(what), [re.compile(p) for p in patterns]) for what, patterns in TRIM_RULES]
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        for trimmed, patterns in rules:
            if any(p.search(rel) for p in patterns):
                trimmed.files += 1
                trimmed.bytes += path.lstat().st_size
                path.unlink()
                break
    remove_empty_dirs(root)
    return [t for t, _ in rules]


def remove_empty_dirs(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()


def elf_needed(path: Path) -> list[str] | None:
    """DT_NEEDED entries of a 64-bit little-endian ELF file (None if it is not one, or has no sections)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        (shoff,) = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
        if not shoff or not shnum:
            return None
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
        dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
        if not dynamic:
            return []
        _, _, _, _, offset, size, link, _, _, _ = dynamic[0]
        f.seek(offset)
        raw = f.read(size)
        strtab = sections[link]
        f.seek(strtab[4])
        strings = f.read(strtab[5])
    needed = []
    for i in range(0, len(raw) - 15, 16):
        tag, value = struct.unpack_from("<qQ", raw, i)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            needed.append(strings[value : strings.index(b"\0", value)].decode())
    return needed


def prune_vendored_libs(root: Path) -> Trimmed:
    """Remove libraries in ``*.libs/`` (auditwheel's vendored copies) that no remaining binary loads."""
    pruned = Trimmed("vendored shared libraries nothing loads any more (e.g. libavif, freetype)")
    vendored = {p.name: p for d in root.glob("*.libs") for p in d.iterdir() if p.is_file()}
    if not vendored:
        return pruned
    binaries = [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name)]
    graph: dict[str, list[str]] = {}
    for binary in binaries:
        needed = elf_needed(binary)
        if needed is None:
            return pruned  # something we cannot read: keep everything
        graph[str(binary)] = needed
    reached: set[str] = set()
    todo = [str(b) for b in binaries if b.name not in vendored]
    while todo:
        for lib in graph.get(todo.pop(), []):
            if lib in vendored and lib not in reached:
                reached.add(lib)
                todo.append(str(vendored[lib]))
    for lib, path in sorted(vendored.items()):
        if lib not in reached:
            pruned.files += 1
            pruned.bytes += path.stat().st_size
            path.unlink()
    return pruned


def check_forbidden(root: Path) -> None:
    """Refuse a dependency tree that pulled in a converter or a server the Lambda never runs."""
    found = sorted(p.name for p in root.iterdir() if p.name.lower() in FORBIDDEN_TOP_LEVEL)
    if found:
        raise ValueError(
            f"refusing to bundle {', '.join(found)}: the Lambda zip serves models, it never converts them"
        )
