"""``python -m targets.agent``: the agent on this machine, with the built-in runtimes and the
``vitbench.runtimes`` plugins this Python has installed."""

import sys

from targets.agent.lifeline import hold_to_parent

hold_to_parent()  # first: an agent whose vitbench is gone must not measure anything

from targets.agent.registry import installed_runtimes  # noqa: E402 - after the lifeline
from targets.agent.service import main  # noqa: E402

sys.exit(main(installed_runtimes()))
