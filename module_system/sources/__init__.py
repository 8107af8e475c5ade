"""Source types by name: ``SOURCE_TYPES.get("s3")`` returns the class.

Third-party source types register through the ``module_system.sources`` entry-point group.
"""

from module_system.plugins import SOURCE_TYPES
from module_system.sources.base import RemoteItem, Source, SourceContext

__all__ = ["SOURCE_TYPES", "RemoteItem", "Source", "SourceContext"]
