"""Bytecode for the package, as an installed copy has it.

pip compiles every module of a wheel when it installs it, so a user's ``module-system``
starts from ``.pyc`` files. This checkout is installed in editable mode, and a machine with
``PYTHONDONTWRITEBYTECODE`` set never writes them: every run of the CLI then compiles ~70
modules from source again (~0.1 s of CPU, measured). Benchmarks that time the CLI as a
child process call :func:`compile_package` first, so they time what users run.
"""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "module_system"


def compile_package() -> None:
    compileall.compile_dir(PACKAGE, quiet=1)
