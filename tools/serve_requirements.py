"""Print the pinned closure of onnxfn[serve]'s dependencies as installed here (for pip-audit)."""

from __future__ import annotations

import re
from importlib import metadata

ROOTS = [
    "onnxruntime",
    "fastapi",
    "mangum",
    "uvicorn",
    "pillow",
    "python-multipart",
    "numpy",
    "fastapi-offline",
]


def closure(roots: list[str]) -> dict[str, str]:
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return seen


if __name__ == "__main__":
    for name, version in sorted(closure(ROOTS).items()):
        print(f"{name}=={version}")
