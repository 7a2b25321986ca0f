"""Interpreter settings of a server process (`vreception serve`, and the relay benchmark's
relay process, which stands for it). Kept apart from config.db so that a process that only
relays media does not load the database libraries to read them."""

from __future__ import annotations

import sys

# The GIL's switch interval (Python's default: 5 ms). A read run on a connection's thread
# hands the GIL back for every row it steps and must take it back from the event loop each
# time: with the default, each row waited up to 5 ms behind a busy loop, and the supervising
# court's board (two reads of ~150-200 rows, run there once past the loop's budget) took
# 74-166 ms at the median under the desk's load instead of ~35.
GIL_SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Apply the settings above to this process."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
