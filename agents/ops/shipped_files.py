"""The files micropay ships beside its code, in a source checkout or an installed wheel.

A checkout has them where the project keeps them (``mosquitto.conf`` at the top level,
the retain guard's source under ``contrib/``); the wheel carries copies in
``agents/ops/shipped/`` (pyproject's ``force-include``). Built artefacts go to ``build/``
in a checkout and to the user's cache directory otherwise (site-packages is not ours).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CHECKOUT: Final = Path(__file__).resolve().parents[2]
PACKAGED: Final = Path(__file__).resolve().parent / "shipped"


def shipped(relative: str) -> Path:
    """A shipped file, named as in the source tree (``contrib/mosquitto/x.c``)."""
    packaged = PACKAGED / Path(relative).name
    return packaged if packaged.is_file() else CHECKOUT / relative


def build_dir(what: str) -> Path:
    """Where to build ``what``: ``build/WHAT`` in a checkout, else the user's cache."""
    if (CHECKOUT / "pyproject.toml").is_file():
        return CHECKOUT / "build" / what
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "micropay" / what
