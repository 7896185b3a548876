"""``python -m targets.agent``: the agent on this machine, with the built-in runtimes and the
``vitbench.runtimes`` plugins this Python has installed."""

import sys

from targets.agent.registry import installed_runtimes
from targets.agent.service import main

sys.exit(main(installed_runtimes()))
