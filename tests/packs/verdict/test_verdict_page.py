"""The pack page of a real suite run, rendered by headless Chromium: DOM and screenshot content."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from packhelpers import reseal
from test_html_chromium import CHROMIUM, _chromium, _dom
from verdicthelpers import edit_json

from invarlock_packs import export_pack_html

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]

SCENARIOS = 7
MODELS = 2
FINITE_RATIOS = 14  # 16 reports; the NaN-injected subjects have no finite ratio


def _png_pixels(data: bytes) -> np.ndarray[Any, Any]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes) to an array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, header[12]) == (8, 0)
    channels = {2: 3, 6: 4}[colour]
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    rows = raw.reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.int32)
    for y in range(height):
        line, kind = rows[y, 1:].astype(np.int32), rows[y, 0]
        above = out[y - 1] if y else np.zeros_like(line)
        out[y] = _unfilter(kind, line, above, channels)
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def _unfilter(
    kind: int, line: np.ndarray[Any, Any], above: np.ndarray[Any, Any], bpp: int
) -> np.ndarray[Any, Any]:
    if kind == 0:
        return line
    if kind == 2:
        return (line + above) % 256
    result = line.copy()
    for i in range(len(line)):
        left = result[i - bpp] if i >= bpp else 0
        up, corner = above[i], above[i - bpp] if i >= bpp else 0
        if kind == 1:
            result[i] = (line[i] + left) % 256
        elif kind == 3:
            result[i] = (line[i] + (left + up) // 2) % 256
        else:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            result[i] = (line[i] + pred) % 256
    return result


def _near(pixels: np.ndarray[Any, Any], hex_colour: str, tolerance: int = 12) -> int:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - target).max(axis=2) <= tolerance).sum())


def test_the_page_shows_verdict_criteria_matrix_forest_and_heatmap(
    suite_pack: Path, tmp_path: Path
) -> None:
    dom = _dom(suite_pack / "index.html", tmp_path)
    assert dom.by_id["verdict"].strip() == "PASS"
    criteria = dom.by_id["criteria"]
    for name in ("clean_all_pass", "stress_required_fail", "error_injection_detected"):
        assert name in criteria
    assert "FAILS" not in criteria

    cells = [a.get("class") for tag, a in dom.tags if tag == "td" and "class" in a]
    matrix = dom.by_id["matrix"]
    assert matrix.count("expected FAIL (informational)") == MODELS * 4
    assert matrix.count("expected PASS") == MODELS
    assert "PASS ×2" in matrix  # the clean scenario's two runs
    # One informational scenario per model (quant_4bit_stress) is not flagged (yellow); the
    # per-tensor comparison flags rmt_norm_noise; nothing gating is missed.
    assert cells.count("info") == MODELS
    assert cells.count("bad") == 0
    assert cells.count("ok") == MODELS * (SCENARIOS - 1)

    forest = [tag for tag, a in dom.tags if tag == "circle"]
    assert len(forest) == FINITE_RATIOS
    bounds = [a for tag, a in dom.tags if tag == "line" and a.get("class") == "bound"]
    assert len(bounds) == FINITE_RATIOS
    assert "nan_injection" in dom.by_id["no-ratio"]
    assert dom.by_id["bounds"] == "1.102"

    heatmap = dom.by_id["heatmap"]
    for guard in ("invariants", "rmt", "spectral", "variance"):
        assert guard in heatmap
    shares = [float(a["data-share"] or 0) for tag, a in dom.tags if "data-share" in a]
    assert len(shares) == 4 * SCENARIOS
    assert shares.count(1.0) >= 4  # every guard flags every NaN-injected subject

    shot = tmp_path / "page.png"
    _chromium(
        "--hide-scrollbars",
        "--window-size=1500,2600",
        f"--screenshot={shot}",
        (suite_pack / "index.html").as_uri(),
        cwd=tmp_path,
    )
    pixels = _png_pixels(shot.read_bytes())
    assert _near(pixels, "#1a7f37") > 500  # the green PASS badge, green dots and outcome cells
    assert _near(pixels, "#dafbe1", 4) > 5_000  # matrix cells as expected
    assert _near(pixels, "#fff8c5", 4) > 2_000  # informational misses
    assert _near(pixels, "#cf222e", 40) > 100  # red dots and saturated heatmap cells
    assert (pixels.min(axis=2) < 200).mean() > 0.02  # text and charts, not a blank page


def test_the_exported_page_shows_the_recorded_criteria_and_a_failed_recomputation(
    suite_pack_copy: Path, tmp_path: Path, key: Any
) -> None:
    edit_json(
        suite_pack_copy / "results/final_verdict.json",
        lambda d: d["criteria"].update(clean_all_pass=False),
    )
    reseal(suite_pack_copy, key.private_key_path)
    page = export_pack_html(suite_pack_copy, tmp_path / "out.html")
    dom = _dom(page, tmp_path)
    assert dom.by_id["banner"].startswith("NOT VERIFIED (exit 7): reports.final_verdict: criterion")
    criteria = dom.by_id["criteria"].replace(" ", "")
    assert "clean_all_passFAILSstress_required_failholdserror_injection_detectedholds" in criteria
