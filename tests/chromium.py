"""Headless Chromium for the dashboard tests and benchmarks (Debian's, driven by Playwright).

Playwright's own browser download does not work everywhere, so the Debian
package (``make chromium``) is launched with the flags that keep it quiet
and self-contained.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright):
    """Launch Chromium through a started ``sync_playwright()`` (close it when done)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
