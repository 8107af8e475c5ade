"""Source types by name: ``SOURCE_TYPES.get("s3")`` returns the class.

Third-party source types register through the ``module_system.sources`` entry-point group.
"""

from module_system.plugins import PluginRegistry
from module_system.sources.base import RemoteItem, Source, SourceContext

SOURCE_TYPES = PluginRegistry(
    "module_system.sources",
    {
        "s3": "module_system.sources.s3:S3Source",
        "web": "module_system.sources.web:WebSource",
        "api": "module_system.sources.api:ApiSource",
        "ftp": "module_system.sources.ftp:FtpSource",
        "sftp": "module_system.sources.sftp:SftpSource",
    },
)

__all__ = ["SOURCE_TYPES", "RemoteItem", "Source", "SourceContext"]
