"""The one HTTP layer of the API source and the crawl, one concern per module:
``transport`` (the client factory: connections pinned to checked addresses), ``egress``
(where requests and credentials may go), ``client`` (error translation, what is retried,
Retry-After, capped bodies, the API sender), ``auth``, ``pagination``, ``incremental`` and
``ratelimit``. See docs/security.md."""
