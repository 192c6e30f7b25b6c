"""What a build made, and Lambda's size limits: the report, its size table, and the refusal above a limit.

Every size is in MiB (1024 × 1024 bytes), the unit AWS states Lambda's limits in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MiB = 1024 * 1024
ZIPPED_LIMIT = 50 * MiB  # Lambda: direct upload of one .zip (function or layer)
UNZIPPED_LIMIT = 250 * MiB  # Lambda: the function and all its layers, unzipped, together
HANDLER = "onnxfn.runtime.aws.handler"


class BundleTooLarge(ValueError):
    """A zip would exceed a Lambda limit; nothing was written. The message has the size table and a way out."""


@dataclass
class PackageSize:
    """One distribution (or ``onnxfn`` / ``models``) inside a zip."""

    name: str
    version: str
    files: int = 0
    unzipped: int = 0
    zipped: int = 0


@dataclass
class Trimmed:
    """What one trim rule removed."""

    what: str
    files: int = 0
    bytes: int = 0


@dataclass
class Archive:
    """One zip: where, its sha256 (empty until written), sizes, what is inside by package."""

    path: str
    sha256: str
    zipped: int
    unzipped: int
    files: int
    packages: list[PackageSize]


@dataclass
class BundleReport:
    """What ``build_bundle`` made: the function zip (path, digest, sizes per package), the layer zip when
    ``--layer`` split the dependencies out, what was trimmed, the models and how bytecode was compiled."""

    path: str
    sha256: str
    arch: str
    python: str
    zipped: int
    unzipped: int
    files: int
    packages: list[PackageSize]
    trimmed: list[Trimmed]
    models: list[str] = field(default_factory=list)
    models_from: str | None = None
    bytecode: str = ""
    onnxfn: str = ""
    seconds: float = 0.0
    layer: Archive | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def written(self) -> bool:
        """False for the report of a refused build (its zips were never written)."""
        return bool(self.sha256)

    def top(self, n: int = 5) -> list[PackageSize]:
        """The ``n`` largest packages by unzipped size (function and layer together)."""
        packages = self.packages + (self.layer.packages if self.layer else [])
        return sorted(packages, key=lambda p: (-p.unzipped, p.name))[:n]

    def table(self) -> str:
        """The human summary ``onnxfn bundle`` prints (sha256 lines only for zips that were written)."""
        target = f"python{self.python}, {self.arch}"
        lines = []
        if self.layer is not None:
            lines.append(f"{_where(self.layer)}  (Lambda layer: the dependencies under python/, {target})")
            lines += _rows(self.layer.packages)
            lines.append(_total("layer", self.layer) + f"   (limit {ZIPPED_LIMIT // MiB} MiB zipped)")
            function = Archive(self.path, self.sha256, self.zipped, self.unzipped, self.files, self.packages)
            lines.append(f"{_where(function)}  (function: code + models, handler {HANDLER}, uses the layer)")
            lines += _rows(self.packages)
            lines.append(_total("function", function) + f"   (limit {ZIPPED_LIMIT // MiB} MiB zipped)")
            lines.append(
                f"function + layer unzipped: {mib(self.unzipped + self.layer.unzipped)} MiB"
                f"   (limit {UNZIPPED_LIMIT // MiB} MiB)"
            )
        else:
            function = Archive(self.path, self.sha256, self.zipped, self.unzipped, self.files, self.packages)
            lines.append(f"{_where(function)}  ({target}, handler {HANDLER})")
            lines += _rows(self.packages)
            lines.append(
                _total("total", function) + f"   (limits {UNZIPPED_LIMIT // MiB} / {ZIPPED_LIMIT // MiB} MiB)"
            )
        if self.trimmed:
            saved = sum(t.bytes for t in self.trimmed)
            lines.append(f"trimmed {mib(saved)} MiB unzipped:")
            lines += [
                f"  {mib(t.bytes):>7} MiB  {t.files:>5} files  {t.what}" for t in self.trimmed if t.files
            ]
        if self.models_from:
            lines.append(
                f"models: none inside; set ONNXFN_MODEL_DIR={self.models_from} "
                f"(serverless: --param modelDir={self.models_from} "
                f"--param modelBucket={bucket(self.models_from)})"
            )
        else:
            lines.append(f"models: {', '.join(self.models)}")
        if self.onnxfn:
            lines.append(f"onnxfn: the runtime from the {self.onnxfn}")
        lines.append(f"bytecode: {self.bytecode}")
        for archive in ([self.layer] if self.layer else []) + [function]:
            if archive.sha256:
                lines.append(f"sha256 {archive.sha256}  {archive.path}")
        if self.written:
            lines.append(f"built in {self.seconds:.1f} s")
        return "\n".join(lines)


def _where(archive: Archive) -> str:
    return archive.path if archive.sha256 else f"{archive.path} (not written)"


def _rows(packages: list[PackageSize]) -> list[str]:
    lines = [f"  {'package':<22}{'version':<12}{'files':>7}{'unzipped MiB':>14}{'zipped MiB':>12}"]
    for p in sorted(packages, key=lambda p: (-p.unzipped, p.name)):
        lines.append(f"  {p.name:<22}{p.version:<12}{p.files:>7}{mib(p.unzipped):>14}{mib(p.zipped):>12}")
    return lines


def _total(label: str, archive: Archive) -> str:
    return f"  {label:<22}{'':<12}{archive.files:>7}{mib(archive.unzipped):>14}{mib(archive.zipped):>12}"


def mib(n: int) -> str:
    """``n`` bytes in MiB, one decimal."""
    return f"{n / MiB:.1f}"


def bucket(url: str) -> str:
    """The bucket of ``s3://bucket/prefix``."""
    return url[5:].partition("/")[0]


def limit_violations(report: BundleReport) -> list[str]:
    """Each Lambda limit the report's zips exceed, in words (empty: within every limit)."""
    found = []
    zips = [("the zip" if report.layer is None else "the function zip", report.zipped)]
    if report.layer is not None:
        zips.append(("the layer zip", report.layer.zipped))
    for what, size in zips:
        if size > ZIPPED_LIMIT:
            found.append(f"{what} is {mib(size)} MiB, above {ZIPPED_LIMIT // MiB} MiB (direct upload)")
    unzipped = report.unzipped + (report.layer.unzipped if report.layer else 0)
    if unzipped > UNZIPPED_LIMIT:
        what = "unzipped" if report.layer is None else "function + layer unzipped"
        found.append(f"{what} is {mib(unzipped)} MiB, above {UNZIPPED_LIMIT // MiB} MiB")
    return found


def enforce_limits(report: BundleReport) -> None:
    """Raise ``BundleTooLarge`` (what is too large, the size table, the ways out) above Lambda's limits."""
    violations = limit_violations(report)
    if not violations:
        return
    ways = []
    if report.layer is None:
        ways.append(
            "--layer (the dependencies go into a Lambda layer zip, the function zip keeps code + models: "
            f"each zip up to {ZIPPED_LIMIT // MiB} MiB, {UNZIPPED_LIMIT // MiB} MiB unzipped together)"
        )
    if not report.models_from:
        ways.append("--models-from s3://bucket/prefix (models stay out of the zip; fetched at init)")
    ways.append("the container image (Dockerfile, up to 10 GB)")
    raise BundleTooLarge(
        "Lambda would refuse this bundle, so nothing was written: "
        + "; ".join(violations)
        + f".\n{report.table()}\nWays out: "
        + "; or ".join(ways)
        + ". See docs/deploy.md."
    )


def package_sizes(
    entries: list[tuple[str, int, int]], owners: dict[str, tuple[str, str]], version: str
) -> list[PackageSize]:
    """Sizes per distribution of zip ``entries`` (name, size, compressed); ``owners`` maps installed paths
    to (distribution, version); ``onnxfn/`` counts as the runtime at ``version``."""
    sizes: dict[str, PackageSize] = {}
    for name, size, zipped in entries:
        top = name.split("/", 1)[0]
        source = source_of(name)
        if top == "onnxfn" or (top.startswith("onnxfn-") and top.endswith(".dist-info")):
            key, ver = "onnxfn (runtime)", version
        elif top == "models":
            key, ver = "models", ""
        elif source in owners:
            key, ver = owners[source]
        else:
            key, ver = top, ""
        package = sizes.setdefault(key, PackageSize(key, ver))
        package.files += 1
        package.unzipped += size
        package.zipped += zipped
    return sorted(sizes.values(), key=lambda p: (-p.unzipped, p.name))


def source_of(name: str) -> str:
    """``pkg/__pycache__/mod.cpython-312.pyc`` → ``pkg/mod.py``; other names unchanged."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-2] == "__pycache__" and name.endswith(".pyc"):
        return "/".join([*parts[:-2], parts[-1].split(".", 1)[0] + ".py"])
    return name
