"""What was done: runs, jobs, landed files and cursors."""

from module_system.state.store import CursorStore, FileRecord, StateStore, resolve_state_url

__all__ = ["CursorStore", "FileRecord", "StateStore", "resolve_state_url"]
