"""Zips the peer as a Lambda deployment package, the way the AWS docs show (`pip install --target`
then `zip -r`): app.py plus the installed files of its dependencies, taken from the interpreter
that runs this script (.venv-bench), so nothing is downloaded.

    .venv-bench/bin/python bench/package_peer.py OUTDIR   -> prints {"name": bytes, ...} as JSON

peer-crhelper.zip: app.py + crhelper (boto3 is part of Lambda's Python runtime).
peer-crhelper-boto3.zip: the same plus boto3 and everything it requires.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import sys
import zipfile
from pathlib import Path

PEER = Path(__file__).resolve().parent / "peer"


def requirements(name: str, seen: set[str]) -> None:
    """name and, recursively, its unconditional requirements (no extras)."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    seen.add(key)
    for req in md.requires(name) or []:
        if "extra ==" in req:
            continue
        if ";" in req and not _marker_ok(req.split(";", 1)[1]):
            continue
        requirements(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0], seen)


def _marker_ok(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # pip vendors packaging
        from pip._vendor.packaging.markers import Marker
    return Marker(marker.strip()).evaluate()


def package(out: Path, dists: list[str]) -> int:
    names: set[str] = set()
    for dist in dists:
        requirements(dist, names)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(PEER / "app.py", "app.py")
        for name in sorted(names):
            dist = md.distribution(name)
            for file in dist.files or []:
                if ".." in file.parts:  # console scripts in bin/
                    continue
                path = Path(dist.locate_file(file))
                if path.is_file():
                    zf.write(path, file.as_posix())
    return out.stat().st_size


def main() -> int:
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    sizes = {
        "peer-crhelper.zip": package(outdir / "peer-crhelper.zip", ["crhelper"]),
        "peer-crhelper-boto3.zip": package(outdir / "peer-crhelper-boto3.zip", ["crhelper", "boto3"]),
    }
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
