"""Every build checks the stored experiments before it executes a chapter.

The chapters read sweeps too big to run in a page from ``experiments/`` (``lrlib.experiments``).
Their outputs are cached between builds (``execute_notebooks: cache``), so a check inside a
chapter would run only when the chapter's code changed. This extension runs the check on
every build instead, when the builder starts:

1. ``python -m lrlib.experiments --verify`` (in a subprocess: the site's own process never
   imports torch) reruns a seeded sample of each experiment's trials and compares them with
   the stored traces; a stale, tampered or unreproduced result stops the build with the
   experiment's name and the ``make experiments NAME=...`` that refreshes it.
2. When an experiment's stored files changed since the last build (a legitimate refresh),
   the cached outputs of the chapters that read it (its declaration's ``used_by``) are
   dropped, so they execute again with the new numbers instead of quoting the old ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
SEEN = "lrlib_experiments_seen.json"  # in the execution cache's folder: the digests the cache was built with


def _digests(root: Path) -> dict[str, dict]:
    """experiment -> the digest of its provenance file and the chapters that read it."""
    import yaml

    out = {}
    for declaration in sorted((root / "experiments").glob("*.yaml")):
        provenance = declaration.with_suffix("") / "provenance.json"
        if not provenance.is_file():
            continue
        used_by = (yaml.safe_load(declaration.read_text(encoding="utf-8")) or {}).get("used_by") or []
        out[declaration.stem] = {"digest": hashlib.sha256(provenance.read_bytes()).hexdigest(),
                                 "used_by": list(used_by)}
    return out


def verify(app) -> None:
    root = Path(app.srcdir)
    if not (root / "experiments").is_dir():
        return
    env = {**os.environ, "LRLIB_EXPERIMENTS": str(root / "experiments")}
    done = subprocess.run([sys.executable, "-m", "lrlib.experiments", "--verify"], cwd=root, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ExtensionError(f"a stored experiment failed its check: {tail[0]}")
    for line in done.stdout.strip().splitlines():
        LOGGER.info(f"[stored experiments] {line}")
    _drop_stale_outputs(app, root)


def _drop_stale_outputs(app, root: Path) -> None:
    cache_path = (getattr(app.config, "nb_execution_cache_path", "")
                  or str(Path(app.outdir).parent / ".jupyter_cache"))
    cache_dir = Path(cache_path)
    if not cache_dir.is_dir():
        return
    seen_path = cache_dir / SEEN
    seen = json.loads(seen_path.read_text(encoding="utf-8")) if seen_path.is_file() else {}
    now = _digests(root)
    changed = [name for name, entry in now.items() if seen.get(name, {}).get("digest") != entry["digest"]]
    chapters = {str((root / page).resolve()) for name in changed for page in now[name]["used_by"]}
    if chapters:
        from jupyter_cache import get_cache

        cache = get_cache(cache_dir)
        for record in cache.list_cache_records():
            if str(Path(record.uri).resolve()) in chapters:
                cache.remove_cache(record.pk)
        # a chapter's project record points at the removed cache entry: it re-executes
        LOGGER.info(f"[stored experiments] re-executing {sorted(chapters)}: {', '.join(changed)} changed")
    seen_path.write_text(json.dumps(now, indent=2, sort_keys=True), encoding="utf-8")


def setup(app):
    app.connect("builder-inited", verify)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
