"""Screenshot of the Streamlit app answering a question: ``docs/screenshot.png``.

    python scripts/screenshot_app.py                       # embedded model + demo corpus, offline
    python scripts/screenshot_app.py --llm openai:gpt-4o-mini --source pubmed --question "..."
    python scripts/screenshot_app.py --seed                # answer first, then photograph the history

Starts ``streamlit run app.py`` headless on a free loopback port with a throw-away history file,
opens it in headless Chromium (the system's /usr/bin/chromium; nothing is downloaded), asks each
``--earlier`` question in a conversation of its own ("New conversation" after each), so the
sidebar lists earlier conversations, then types the question into the chat input and waits for
the answer, opens each ``--expand`` expander (e.g. a claim, the set-aside list), then saves a PNG
of the whole page. ``scripts/screenshot_evidence.py`` uses it for an online answer over loopback
servers (``docs/screenshot_evidence.png``).
Chromium is driven over the DevTools protocol with the ``websockets`` package that Streamlit
already depends on, so no Node or Playwright is needed.

With ``--seed`` the pipeline runs in this process first and its answer is stored in the history
file as a conversation of its own; the page then opens that conversation by its link (``?c=``),
as a reload would (useful when the browser should not wait on a slow model).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_QUESTION = "Do statins reduce dementia risk in older adults?"
DEFAULT_EARLIER = ["Does melatonin improve sleep in older adults?"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with status {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")

    def screenshot(self, width: int, height: int, path: Path) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(1.5)  # relayout at the new size
        # the chat sticks to its bottom; a page cut at max-height should show its top instead
        self.js(
            'document.querySelectorAll(\'[data-testid="stMain"], [data-testid="stAppScrollToBottomContainer"]\')'
            ".forEach(e => e.scrollTo(0, 0)); window.scrollTo(0, 0)"
        )
        time.sleep(0.5)
        shot = self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {path} ({width}x{height})", file=sys.stderr)


def seed_history(question: str, env: dict[str, str]) -> str:
    """Runs the pipeline here and stores its answer where the app will read it; returns the
    conversation's link token."""
    os.environ.update(env)
    from clinfo.app.history import Viewer, open_history
    from clinfo.pipeline import ClinfoAI
    from clinfo.redact import secret_values
    from clinfo.settings import load_settings

    settings = load_settings()
    print(f"answering in-process with {settings.llm} over {settings.source} …", file=sys.stderr)
    answer = ClinfoAI(settings=settings).forward(question)
    store = open_history(settings, secret_values(settings))
    conversation = store.new_conversation(Viewer(session="screenshot-seed"), question)
    store.add(conversation.id, question, answer=answer, config={"llm": settings.llm, "source": settings.source})
    return conversation.token


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--question", default=DEFAULT_QUESTION)
    ap.add_argument(
        "--earlier",
        action="append",
        help="asked first, each in its own conversation (repeatable; default: one "
        "sleep question; --earlier '' for none)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    ap.add_argument("--llm", default=os.environ.get("CLINFO_LLM", "local"))
    ap.add_argument("--source", default=os.environ.get("CLINFO_SOURCE", "demo"))
    ap.add_argument("--prefilter-k", type=int, help="articles screened (default: the preset's; small screens 5)")
    ap.add_argument("--seed", action="store_true", help="answer in-process first, then show it from history")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--max-height", type=int, default=2600, help="longer pages are cut here (0: no limit)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the answer")
    ap.add_argument("--progress-shot", type=Path, help="also photograph the live status while articles are screened")
    ap.add_argument(
        "--expand",
        action="append",
        default=[],
        help="open the first closed expander whose label contains this text before the photo (repeatable)",
    )
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    args.earlier = [q for q in (DEFAULT_EARLIER if args.earlier is None else args.earlier) if q.strip()]

    work = Path(tempfile.mkdtemp(prefix="clinfo-shot-"))
    env = {
        **os.environ,
        "CLINFO_APP_DB": str(work / "history.db"),
        "CLINFO_LLM": args.llm,
        "CLINFO_SOURCE": args.source,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    if args.prefilter_k is not None:
        env["CLINFO_PREFILTER_K"] = str(args.prefilter_k)
    args.link = seed_history(args.question, env) if args.seed else None

    app_port, cdp_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(REPO / "app.py"),
                "--server.headless",
                "true",
                "--server.port",
                str(app_port),
                "--server.address",
                "127.0.0.1",
                "--server.fileWatcherType",
                "none",
                "--theme.base",
                "light",
                "--client.toolbarMode",
                "viewer",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "streamlit.log", "wb"),
        )
        procs.append(app)
        wait_http(f"http://127.0.0.1:{app_port}/_stcore/health", 90, app)

        chrome = subprocess.Popen(
            [
                args.chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={work / 'chromium'}",
                f"--remote-debugging-port={cdp_port}",
                f"--window-size={args.width},1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "chromium.log", "wb"),
        )
        procs.append(chrome)
        wait_http(f"http://127.0.0.1:{cdp_port}/json/version", 60, chrome)
        pages = json.loads(wait_http(f"http://127.0.0.1:{cdp_port}/json/list", 10))
        page = next(p for p in pages if p.get("type") == "page")
        from websockets.sync.client import connect

        with connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=20) as ws:
            drive(DevTools(ws), args, app_port)
    except BaseException:
        log = work / "streamlit.log"
        if log.exists():  # the app's own account of what went wrong
            print(
                "--- streamlit log (last lines) ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]),
                file=sys.stderr,
            )
        raise
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


# JavaScript: 'answer' once export buttons show, 'error' once the chat shows an error, else ''
FINISHED = (
    "(document.querySelector('[data-testid=\"stDownloadButton\"]') ? 'answer'"
    " : document.querySelector('[data-testid=\"stChatMessage\"] [data-testid=\"stAlertContentError\"]') ? 'error' : '')"
)


CHAT_BOX = '[data-testid="stChatInput"] textarea'


def ask_in_browser(cdp: DevTools, question: str) -> None:
    cdp.js(f"document.querySelector('{CHAT_BOX}').focus()")
    cdp.call("Input.insertText", text=question)
    for kind in ("keyDown", "keyUp"):
        cdp.call(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            **({"text": "\r"} if kind == "keyDown" else {}),
        )
    print(f"asked {question!r}; waiting for the answer …", file=sys.stderr)


def click_button(cdp: DevTools, label: str) -> None:
    found = cdp.js(
        "(() => { const b = Array.from(document.querySelectorAll('button')).find(e => e.innerText.trim().endsWith("
        + json.dumps(label)
        + ")); if (b) { b.click(); return true } return false })()"
    )
    if not found:
        raise SystemExit(f"no button labelled {label!r} on the page")


def open_expander(cdp: DevTools, label: str) -> None:
    found = cdp.js(
        "(() => { const d = Array.from(document.querySelectorAll('[data-testid=\"stExpander\"] details'))"
        ".find(e => !e.open && e.querySelector('summary').innerText.includes("
        + json.dumps(label)
        + ")); if (d) { d.querySelector('summary').click(); return true } return false })()"
    )
    if not found:
        raise SystemExit(f"no closed expander whose label contains {label!r} on the page")


def drive(cdp: DevTools, args: argparse.Namespace, app_port: int) -> None:
    cdp.call("Page.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", width=args.width, height=1000, deviceScaleFactor=1, mobile=False)
    link = f"?c={args.link}" if args.link else ""
    cdp.call("Page.navigate", url=f"http://127.0.0.1:{app_port}/{link}")
    cdp.wait_for(f"!!document.querySelector('{CHAT_BOX}')", 90, "the chat input")

    if not args.seed:
        for question in args.earlier:
            ask_in_browser(cdp, question)
            cdp.wait_for(FINISHED, args.timeout, "the earlier answer")
            time.sleep(1)
            click_button(cdp, "New conversation")
            cdp.wait_for("!document.querySelector('[data-testid=\"stChatMessage\"]')", 60, "a new conversation")
        ask_in_browser(cdp, args.question)
        if args.progress_shot:
            seen = cdp.wait_for(
                "document.querySelector('[data-testid=\"stProgress\"]') ? 'progress' : " + FINISHED,
                args.timeout,
                "screening progress",
            )
            if seen == "progress":
                cdp.screenshot(args.width, 1400, args.progress_shot)
    done = cdp.wait_for(FINISHED, args.timeout, "the answer")
    if done == "error":
        print("the app shows an error; the screenshot will show it", file=sys.stderr)
    time.sleep(2)  # let fonts, icons and the collapsing status settle
    for label in args.expand:
        open_expander(cdp, label)
    if args.expand:
        time.sleep(1)

    # Streamlit scrolls inside its main block, not the document: grow the viewport to fit it
    height = cdp.js(
        "Math.max(...Array.from(document.querySelectorAll("
        '\'[data-testid="stMain"], [data-testid="stMainBlockContainer"]\'))'
        ".map(e => e.scrollHeight), document.body.scrollHeight)"
    )
    height = max(int(height or 1000) + 120, 1000)
    cdp.screenshot(args.width, min(height, args.max_height) if args.max_height else height, args.out)


if __name__ == "__main__":
    main()
