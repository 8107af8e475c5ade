"""HTTP building blocks of the API source, one concern per module: ``client`` (send a
request, translate httpx errors and HTTP statuses), ``auth``, ``pagination`` and
``ratelimit``."""
