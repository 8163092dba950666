"""Load `pulsing._core` from $PULSING_CORE_SO (the ASan+UBSan build) instead of the editable one.

`make test-py-asan` puts this directory on PYTHONPATH. The editable install's import hook sits at
the front of sys.meta_path and maps `pulsing._core` to the plain build, so a path entry alone
cannot override it; this finder goes in front of it for that one module. The Python sources stay
the editable ones. Inherited by subprocesses through the environment.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

_SO = os.environ.get("PULSING_CORE_SO")


class _SanitizedCoreFinder:
    """Resolve `pulsing._core` to $PULSING_CORE_SO; leave every other module alone."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname != "pulsing._core":
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, _SO)
        return importlib.util.spec_from_file_location(fullname, _SO, loader=loader)


if _SO:
    if not os.path.isfile(_SO):
        raise ImportError(f"PULSING_CORE_SO={_SO!r} does not exist")
    sys.meta_path.insert(0, _SanitizedCoreFinder)
