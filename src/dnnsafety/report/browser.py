"""Flags for opening reports in headless Chromium (tests, screenshots for the docs)."""

from __future__ import annotations

CHROME_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
"""Headless, offline, no first-run UI; add a fresh ``--user-data-dir`` per browser."""
