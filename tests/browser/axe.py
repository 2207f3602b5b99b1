"""Accessibility scans with axe-core (Deque, MPL-2.0) inside the Selenium page.

axe-core is installed, at a pinned version, by `make install-browser` into .cache/axe-core (git-ignored;
nothing is fetched at test time). Its script is injected through WebDriver, so the page's CSP (scripts
from 'self' only) does not apply to it and the page under test is served unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

AXE_SCRIPT = Path(
    os.environ.get(
        "TRIAGE_AXE",
        Path(__file__).resolve().parents[2] / ".cache" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js",
    )
)
SEVERE_IMPACTS = ("serious", "critical")


def serious_violations(driver: Any, context: str = "document") -> list[dict[str, Any]]:
    """The serious and critical WCAG 2.x A/AA violations axe-core finds in the page now, each as
    {id, impact, help, targets}; [] when there are none."""
    if not AXE_SCRIPT.is_file():
        raise RuntimeError(f"{AXE_SCRIPT} missing: run `make install-browser` (installs axe-core from npm)")
    driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
    tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"axe.run({context}, {{runOnly: {{type: 'tag', values: {tags!r}}}}})"
        ".then((r) => done(r.violations), (e) => done({error: String(e)}));"
    )
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"axe-core failed: {result['error']}")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [node["target"] for node in v["nodes"]],
        }
        for v in result
        if v.get("impact") in SEVERE_IMPACTS
    ]
