"""The seed's entry point, kept working from a checkout:

    python -m orchestrator.cli_init --batch-file jobs.json --max-workers 10 --monitor-duration 30

It is ``module-system run`` with the same flags (and every other ``run`` option).
"""

from __future__ import annotations

import sys

from module_system.cli import run

if __name__ == "__main__":
    run.main(sys.argv[1:], prog_name="python -m orchestrator.cli_init")
