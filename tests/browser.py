"""Headless Chromium for tests: open a local page, read what the browser loaded, take a screenshot.

Talks the DevTools protocol over a websocket (aiohttp) to a real Debian `chromium`, which the README's
test command installs; a missing browser fails the test (`require_chromium`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900"]


def ensure_chromium() -> tuple[str | None, str]:
    """Path of a chromium binary; (None, how to get one) when there is none. Nothing is installed here:
    the README's test command (and so `.ci/run`) installs Debian's chromium before the tests."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p, ""
    return None, ("no chromium on PATH: install it (Debian: `apt-get install chromium`; the README's test command "
                  "does) or set BRAINROBUST_SKIP_BROWSER=1 to skip the browser check on purpose")


def require_chromium() -> str:
    """The chromium binary, or the test fails: a missing browser is never a silent skip. Only an
    explicit BRAINROBUST_SKIP_BROWSER=1 skips, and never under CI=true."""
    import pytest

    chromium, why = ensure_chromium()
    if chromium:
        return chromium
    if os.environ.get("BRAINROBUST_SKIP_BROWSER") == "1" and os.environ.get("CI", "").lower() not in ("1", "true"):
        pytest.skip(f"BRAINROBUST_SKIP_BROWSER=1: {why}")
    pytest.fail(why)


async def _inspect(port: int, url: str, screenshot: Path, timeout: float) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10**6))

            async def call(method, **params):
                i = next(ids)
                await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    msg = json.loads((await ws.receive(timeout=timeout)).data)
                    if msg.get("id") == i:
                        if "error" in msg:
                            raise RuntimeError(f"{method}: {msg['error']}")
                        return msg["result"]

            async def evaluate(expr):
                return (await call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True))["result"].get("value")

            await call("Page.enable")
            await call("Page.navigate", url=url)
            deadline = time.time() + timeout
            while await evaluate("document.readyState") != "complete":
                if time.time() > deadline:
                    raise TimeoutError(f"{url} did not finish loading in {timeout}s")
                await asyncio.sleep(0.2)
            # wait for every <img> to be decoded (data: URIs decode asynchronously)
            await evaluate("Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
            info = json.loads(await evaluate(
                "JSON.stringify({title: document.title, images: Array.from(document.images).map(i => "
                "({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, complete: i.complete})), "
                "height: document.documentElement.scrollHeight, "
                # the rendered text of every element with an id (the report's sections: world, controls, ...)
                "texts: Object.fromEntries(Array.from(document.querySelectorAll('[id]')).map(e => [e.id, e.innerText]))})"))
            shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return info


def inspect_page(chromium: str, page: Path, screenshot: Path, timeout: float = 90) -> dict:
    """Open `page` (a local file) in headless Chromium; returns the title, every image's natural size, the
    rendered text of every element with an id, and writes a full-page PNG screenshot.

    Chromium runs in its own process group, and the whole group (renderer, GPU and crash-handler
    children included) is stopped and reaped before its profile folder is removed: a child still
    writing into `Default/` while the folder was deleted failed CI once ("Directory not empty")."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.Popen([chromium, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.time() + timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode()[-800:]}")
                if time.time() > deadline:
                    raise TimeoutError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            return asyncio.run(_inspect(port, page.resolve().as_uri(), screenshot, timeout))
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM chromium's process group, SIGKILL what is left after `grace` seconds, and wait until no
    process of the group remains."""
    import signal

    import psutil

    def alive() -> bool:  # a zombie writes nothing: only running members count
        for p in psutil.process_iter(["status"]):
            try:
                if os.getpgid(p.pid) == proc.pid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    return True
            except (ProcessLookupError, psutil.Error):
                continue
        return False

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        end = time.time() + wait
        while time.time() < end:
            proc.poll()  # reap the group leader so it does not linger as a zombie
            if not alive():
                return
            time.sleep(0.1)
    proc.poll()
