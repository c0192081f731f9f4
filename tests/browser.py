"""A real browser for tests that look at what people see: Debian's chromium driven by Playwright.

Chromium comes from the system package (installed here when missing, as root);
Playwright's own browser download (``playwright install``) is never used.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str:
    """Path of a chromium binary, installing Debian's package when none is there."""
    found = next((p for p in CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900)
    return next(p for p in CANDIDATES if os.access(p, os.X_OK))


@dataclass
class PageView:
    url: str
    text: str
    images_drawn: int
    images_broken: int
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None


@contextlib.contextmanager
def browser() -> Iterator["object"]:
    """A Playwright page in headless chromium (1600x1000), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        br = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = br.new_context(viewport={"width": 1600, "height": 1000}).new_page()
            page.console_errors = []  # type: ignore[attr-defined]
            page.on("console", lambda m: page.console_errors.append(m.text[:300]) if m.type == "error" else None)
            yield page
        finally:
            br.close()


def look(page, url: str, shot: Path | None = None, *, wait_for_text: str | None = None, settle_s: float = 2.0, timeout_s: float = 60.0) -> PageView:
    """Open ``url``, wait until the single-page app has drawn (``wait_for_text`` if given), and describe the page."""
    page.console_errors.clear()
    page.goto(url, wait_until="networkidle", timeout=timeout_s * 1000)
    if wait_for_text:
        page.get_by_text(wait_for_text).first.wait_for(timeout=timeout_s * 1000)
    time.sleep(settle_s)  # images decode and late requests land after the text appears
    images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    return PageView(url, page.inner_text("body"), sum(images), len(images) - sum(images), list(page.console_errors), shot)
