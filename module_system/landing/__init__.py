"""Landing: keys, checksums, streaming uploads and the manifest of what reached the bucket.

A regular package (not a namespace one) so that import checks see its modules.
"""
