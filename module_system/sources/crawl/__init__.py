"""Building blocks of the web source's crawl, one concern per module.

``urls`` (canonical form, scope, landing keys) · ``fetcher`` (one HTTP request, errors
translated) · ``robots`` (robots.txt rules) · ``sitemaps`` · ``frontier`` (what to fetch
next, per-host politeness, the page budget) · ``page`` (links and meta robots of a parsed
page) · ``extract`` (records from CSS selectors) · ``history`` (validators of the last run,
for conditional requests) · ``render`` (optional headless Chromium) · ``crawler`` (worker
threads tying them together). Pages are decoded by :mod:`module_system.text_encoding`,
which the HTML validator shares.
"""
