"""Moved to `features.guarantees`: the service's simulator needs it and serving never imports training.

This module name is kept as an alias of that very module (not a copy of its names), so code that
patches `training.guarantees.<name>`, as the MAPIE comparison test does, still patches what the
functions there call.
"""

from __future__ import annotations

import sys

from features import guarantees as _guarantees

sys.modules[__name__] = _guarantees
