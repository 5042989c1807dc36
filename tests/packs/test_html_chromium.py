"""The pack's HTML page, rendered by a real headless Chromium (Debian ``chromium``)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from packhelpers import VERDICT, write_json

from invarlock_packs import build_pack, export_pack_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (apt-get install chromium chromium-driver)",
    ),
]


def _chromium(*args: str, cwd: Path) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={cwd / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Page(HTMLParser):
    """Collects what the rendered DOM holds."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._where: list[str] = []
        self.by_id: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._where.append(dict(attrs).get("id") or "")

    def handle_endtag(self, tag: str) -> None:
        if self._where:
            self._where.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for ident in self._where:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data


def _dom(page: Path, tmp_path: Path) -> _Page:
    parsed = _Page()
    parsed.feed(_chromium("--dump-dom", page.as_uri(), cwd=tmp_path))
    return parsed


def test_built_page_renders_verdict_tables_and_guard_charts(
    sealed_pack: Path, tmp_path: Path
) -> None:
    dom = _dom(sealed_pack / "index.html", tmp_path)
    assert dom.by_id["verdict"].strip() == "PASS"
    rows = [t for t in dom.tags if t[0] == "tr"]
    assert len(rows) >= 2 + 2 + 1  # meta rows, report rows, matrix row
    charts = sorted(
        a.get("data-guard") or "" for tag, a in dom.tags if tag == "div" and "data-guard" in a
    )
    assert charts == ["invariants", "spectral"]
    assert sum(1 for tag, _ in dom.tags if tag == "rect") == 4  # one bar per guard per report
    text = " ".join(dom.text)
    for expected in ("noop_clean", "reseed_stress", "ppl_ratio", "FAIL ×1", "PASS ×1", "high"):
        assert expected in text
    assert not any(tag == "script" for tag, _ in dom.tags)
    assert not any((a.get("src") or a.get("href") or "").startswith("http") for _, a in dom.tags)

    shot = tmp_path / "page.png"
    _chromium(
        "--hide-scrollbars",
        "--window-size=1280,1400",
        f"--screenshot={shot}",
        (sealed_pack / "index.html").as_uri(),
        cwd=tmp_path,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page, not a blank one (a blank 1280x1400 PNG is ~5 KB)


def test_values_from_the_pack_are_escaped(tmp_path: Path, build_kwargs: dict[str, Any]) -> None:
    hostile = write_json(
        tmp_path / "fv.json",
        {**VERDICT, "verdict": "FAIL", "failed_requirements": ["<img src=x onerror=alert(1)>"]},
    )
    built = build_pack(tmp_path / "p", **{**build_kwargs, "final_verdict": hostile})
    dom = _dom(built.path / "index.html", tmp_path)
    assert not any(tag == "img" for tag, _ in dom.tags)
    assert "<img src=x onerror=alert(1)>" in dom.by_id["failed"]
    assert dom.by_id["verdict"].strip() == "FAIL"


def test_exported_page_shows_a_failed_verification(pack_copy: Path, tmp_path: Path) -> None:
    (pack_copy / "results" / "final_verdict.txt").write_text("PASS (edited)\n")
    page = export_pack_html(pack_copy, tmp_path / "out.html")
    dom = _dom(page, tmp_path)
    assert dom.by_id["banner"].startswith("NOT VERIFIED (exit 6)")
