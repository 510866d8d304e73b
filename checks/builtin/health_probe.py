"""One GET of the coordinator's ``/health``, timed, for the ``coordinator`` and ``clock`` checks.

Uses the standard library's HTTP client: a check's child process should not pay for
importing more than it needs.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Optional

HEALTH_PATH = "/health"


@dataclasses.dataclass(frozen=True)
class HealthProbe:
    """What one request to ``/health`` showed."""

    url: str
    status_code: Optional[int]
    """None when no HTTP answer came (DNS, refused, timeout, TLS)."""
    date_header: Optional[str]
    sent_at: float
    """Wall-clock time (epoch seconds) the request was sent and the answer received."""
    received_at: float
    error: str = ""

    @property
    def round_trip_s(self) -> float:
        return max(0.0, self.received_at - self.sent_at)


URL_FACT = "coordinator_url"
CA_BUNDLE_FACT = "coordinator_ca_bundle"
VERIFY_TLS_FACT = "coordinator_verify_tls"


def coordinator_facts(url: str, ca_bundle: Optional[str], verify_tls: bool) -> dict[str, Any]:
    """The node facts the pilot (and ``gridpilot checks run``) give the checks to reach the
    coordinator the way the pilot does: its URL and how its certificate is verified."""
    facts: dict[str, Any] = {URL_FACT: url} if url else {}
    if ca_bundle:
        facts[CA_BUNDLE_FACT] = ca_bundle
    if not verify_tls:
        facts[VERIFY_TLS_FACT] = False
    return facts


def coordinator_url(options: Mapping[str, Any], node_facts: Mapping[str, Any]) -> str:
    """Option ``url``, else the ``coordinator_url`` node fact the pilot passes; "" if neither."""
    return str(options.get("url") or node_facts.get(URL_FACT) or "").rstrip("/")


def probe_coordinator(
    options: Mapping[str, Any], node_facts: Mapping[str, Any], url: str, timeout_s: float
) -> HealthProbe:
    """``fetch_health`` trusting what the pilot trusts: option ``ca_bundle``, else the pilot's."""
    return fetch_health(
        url,
        timeout_s=timeout_s,
        ca_bundle=options.get("ca_bundle") or node_facts.get(CA_BUNDLE_FACT),
        verify=bool(node_facts.get(VERIFY_TLS_FACT, True)),
    )


def fetch_health(
    url: str, *, timeout_s: float, ca_bundle: Optional[str] = None, verify: bool = True
) -> HealthProbe:
    """GET ``url`` + ``/health``; an HTTP error status is an answer, not an error."""
    target = url.rstrip("/") + HEALTH_PATH
    context = ssl.create_default_context(cafile=ca_bundle) if target.startswith("https") else None
    if context is not None and not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    sent_at = time.time()
    try:
        with urllib.request.urlopen(target, timeout=timeout_s, context=context) as response:
            response.read(65536)
            code, date = response.status, response.headers.get("Date")
    except urllib.error.HTTPError as exc:
        code, date = exc.code, exc.headers.get("Date")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return HealthProbe(target, None, None, sent_at, time.time(), error=str(reason))
    return HealthProbe(target, code, date, sent_at, time.time())
