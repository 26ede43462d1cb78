"""The page's files themselves (no browser needed): data reaches the DOM as text only, and nothing
inline that the Content-Security-Policy would block."""

from __future__ import annotations

import os
import re

import queuectl_client.dashboard

STATIC = os.path.join(os.path.dirname(queuectl_client.dashboard.__file__), "static")


def _read(name: str) -> str:
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()


def test_no_script_writes_html() -> None:
    scripts = [n for n in os.listdir(STATIC) if n.endswith(".js")]
    assert scripts
    for name in scripts:
        text = _read(name)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "setTimeout(\"", "javascript:"):
            assert sink not in text, (name, sink)


def test_the_page_loads_every_script_and_style_from_static_files_by_relative_urls() -> None:
    html = _read("index.html")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, re.IGNORECASE), "an inline event handler"
    sources = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert sources and all(s.startswith("static/") for s in sources), sources
    for s in sources:
        assert os.path.exists(os.path.join(STATIC, s.removeprefix("static/"))), s
    assert '<meta name="base-path" content="{{BASE_PATH}}">' in html
    assert '<meta name="csrf-token" content="{{CSRF_TOKEN}}">' in html
    assert '<meta name="viewport"' in html
