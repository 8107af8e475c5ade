"""The Fetch → Validate → Upload flow every source shares.

For one job: the source lists items → the state store says which are unchanged → each new
or changed item is fetched to a temp file → the validators give a verdict → the file lands
in the validated area or in quarantine (with an ``.error.json``) → the state store records
it. Items move ``service.concurrency`` at a time (:mod:`.files`). Finally the manifest is
uploaded and, if nothing failed, the source may commit (e.g. an API cursor) (:mod:`.job`).
"""

from module_system.pipeline.job import JobRun, run_job
from module_system.pipeline.options import NullProgress, Progress, RunOptions

__all__ = ["JobRun", "NullProgress", "Progress", "RunOptions", "run_job"]
