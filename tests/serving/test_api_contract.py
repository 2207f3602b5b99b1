"""The API contract: offline docs, idempotency conflicts, unknown category warnings, config-driven schema."""

from __future__ import annotations

import re

from tests.serving.conftest import listing_json


def test_docs_page_loads_only_from_this_service(serve) -> None:
    with serve() as api:
        page = api.client.get("/docs")
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assets = [api.client.get(url) for url in urls]
        unknown = api.client.get("/docs/assets/secrets.txt")

    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
    assert len(urls) >= 3 and all(url.startswith("/") for url in urls)
    assert all(a.status_code == 200 and a.content for a in assets), [(a.url, a.status_code) for a in assets]
    assert unknown.status_code == 404
