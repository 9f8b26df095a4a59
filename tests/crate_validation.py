"""roc-validator, offline: the RO-Crate 1.1 JSON-LD context it would fetch from w3id.org is
served from tests/data/ro-crate-1.1-context.jsonld (the context as ro-crate-py 0.13 shipped
it, sha256 bb5dd0a7…) through the validator's own HTTP cache in offline mode, so the crates
are validated on machines without internet, as CI's are."""

from __future__ import annotations

import io
from pathlib import Path

import requests
import requests_cache
import urllib3
from rocrate_validator import models, services

HERE = Path(__file__).resolve().parent
CONTEXTS = {"https://w3id.org/ro/crate/1.1/context": HERE / "data/ro-crate-1.1-context.jsonld"}


class _Bundled(requests.adapters.HTTPAdapter):
    """Answers the context's URL from the file beside the tests, never from the network."""

    def send(self, request, **kwargs):
        body = CONTEXTS[request.url].read_bytes()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body), headers={"Content-Type": "application/ld+json"}, status=200,
            preload_content=False, request_url=request.url,
        )  # fmt: skip
        return self.build_response(request, raw)


def seed_cache(cache: Path) -> Path:
    session = requests_cache.CachedSession(str(cache), backend="sqlite", expire_after=-1)
    session.mount("https://w3id.org/", _Bundled())
    for url in CONTEXTS:
        session.get(url).raise_for_status()
    session.close()
    return cache


def validate(crate: Path, profile: str, cache: Path, severity: str = "REQUIRED") -> list[str]:
    """The issues roc-validator finds in `crate` (a folder or a zip) for `profile`, as text."""
    settings = services.ValidationSettings(
        rocrate_uri=str(crate), profile_identifier=profile,
        requirement_severity=getattr(models.Severity, severity),
        offline=True, cache_path=str(seed_cache(cache)),
    )  # fmt: skip
    result = services.validate(settings)
    return [f"{i.severity.name} {i.check.identifier}: {i.message}" for i in result.get_issues()]
