"""Fetch GraphiQL's browser assets from the npm registry, so GraphiQL works offline.

``ordergraph assets`` runs ``npm pack`` on pinned packages and copies their prebuilt UMD
files into ``gateway/static/vendor`` (not kept in the repository). The gateway then serves
every asset itself: an integrator on a plant network without internet gets a working page.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from .graphiql import VENDOR_DIR

# package spec -> {file inside the package tarball: name under static/vendor}
PACKAGES: dict[str, dict[str, str]] = {
    "react@18.3.1": {"package/umd/react.production.min.js": "react.production.min.js"},
    "react-dom@18.3.1": {"package/umd/react-dom.production.min.js": "react-dom.production.min.js"},
    "graphiql@3.8.3": {"package/graphiql.min.js": "graphiql.min.js", "package/graphiql.min.css": "graphiql.min.css"},
    "graphql-ws@5.16.0": {"package/umd/graphql-ws.min.js": "graphql-ws.min.js"},
}


class AssetsError(RuntimeError):
    """The assets could not be fetched; the message says what to do."""


def fetch_assets(dest: Path = VENDOR_DIR, progress: Callable[[str], None] = print) -> list[Path]:
    """Download the pinned packages with npm and install their browser files in ``dest``."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsError("npm is not installed: install Node.js (which brings npm), then run `ordergraph assets` again")
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="ordergraph-assets-") as tmp:
        for spec, files in PACKAGES.items():
            progress(f"  npm pack {spec} ...")
            proc = subprocess.run(
                [npm, "pack", spec, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                raise AssetsError(f"npm pack {spec} failed: {proc.stderr.strip()[-500:]}")
            tarball = Path(tmp) / proc.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                for member, name in files.items():
                    src = tar.extractfile(member)
                    if src is None:
                        raise AssetsError(f"{spec}: {member} missing from the package")
                    target = dest / name
                    target.write_bytes(src.read())
                    written.append(target)
                    progress(f"    {target.name} ({target.stat().st_size // 1024} KiB)")
    return written
