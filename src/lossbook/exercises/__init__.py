"""Self-checks for the chapters' exercises, one module per chapter (``chNN.py``).

Each ``check_*`` function runs a student's answer on fresh random cases (a new seed
every call, so the answer cannot be tuned to fixed numbers), compares it with the
package's tested implementation, and either returns a short success message or raises
``AssertionError`` with feedback that says what went wrong and what to look at.

A chapter adds its checks in ``lossbook/exercises/chNN.py`` and one import line here;
every name stays reachable as ``lossbook.exercises.check_...``.
"""

from __future__ import annotations

from . import ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12
from .ch01 import *  # noqa: F403
from .ch02 import *  # noqa: F403
from .ch03 import *  # noqa: F403
from .ch04 import *  # noqa: F403
from .ch05 import *  # noqa: F403
from .ch06 import *  # noqa: F403
from .ch07 import *  # noqa: F403
from .ch08 import *  # noqa: F403
from .ch09 import *  # noqa: F403
from .ch10 import *  # noqa: F403
from .ch11 import *  # noqa: F403
from .ch12 import *  # noqa: F403

_MODULES = (ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12)
"""Every chapter's check module; a new chapter adds its module here (and above)."""

__all__: list[str] = []
for _module in _MODULES:
    __all__ += list(_module.__all__)
