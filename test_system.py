"""The seed's demo entry point: ``python test_system.py`` runs ``module-system demo``."""

from __future__ import annotations

import sys

from module_system.cli import demo

if __name__ == "__main__":
    demo.main(sys.argv[1:], prog_name="python test_system.py")
