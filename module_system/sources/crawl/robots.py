"""robots.txt rules per origin, parsed with Protego (the parser Scrapy uses).

As in Scrapy, a robots.txt that is missing (4xx) or cannot be fetched allows everything;
the failure is logged. Redirects of robots.txt itself are followed (a few hops) within the
service's egress policy: a hop to another origin raises :class:`EgressRefused` for the
crawler to record, and nothing is sent there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from protego import Protego

from module_system.errors import ModuleSystemError
from module_system.retry import Retrier
from module_system.sources.crawl.fetcher import Fetcher, Response
from module_system.sources.crawl.urls import normalize_url
from module_system.sources.http.egress import EgressRefused

log = logging.getLogger(__name__)
MAX_ROBOTS_REDIRECTS = 5


@dataclass
class RobotsRules:
    """The rules for one origin as they apply to ``agent`` (None: everything allowed)."""

    agent: str
    parser: Protego | None = None
    sitemaps: list[str] = field(default_factory=list)

    def allowed(self, url: str) -> bool:
        return self.parser is None or bool(self.parser.can_fetch(url, self.agent))

    def crawl_delay(self) -> float:
        if self.parser is None:
            return 0.0
        return float(self.parser.crawl_delay(self.agent) or 0.0)


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: ``module-system/1.0 (...)``
    gives ``module-system``."""
    return user_agent.split("/", 1)[0].split(" ", 1)[0] or "*"


def load_robots(fetcher: Fetcher, retrier: Retrier, origin: str, agent: str) -> RobotsRules:
    url = f"{origin}/robots.txt"
    try:
        for _ in range(MAX_ROBOTS_REDIRECTS + 1):
            response = _get(fetcher, retrier, url)
            location = response.headers.get("location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = normalize_url(location, url) or ""
                if not url:
                    break
                fetcher.policy.check_origin(url, "robots.txt redirect to")
                continue
            if response.status >= 400 or response.body is None:
                return RobotsRules(agent)
            parser = Protego.parse(response.body.decode("utf-8", errors="replace"))
            return RobotsRules(agent, parser, list(parser.sitemaps))
    except EgressRefused:
        raise
    except ModuleSystemError as exc:
        log.warning("%s: could not be fetched, allowing everything: %s", url, exc)
    return RobotsRules(agent)


def _get(fetcher: Fetcher, retrier: Retrier, url: str) -> Response:
    return retrier.call(lambda: fetcher.get(url, any_type=True), f"robots {url}")
