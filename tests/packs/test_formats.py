"""Checksums files, safe paths, trust stores and source provenance: the small parsers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packhelpers import write_json

from invarlock_core.errors import InputError, UsageError
from invarlock_packs.checksums import ChecksumFormatError, format_checksums, parse_checksums
from invarlock_packs.provenance import collect_environment, collect_source_repo, redact_url
from invarlock_packs.safe_paths import UnsafePathError, check_relpath, read_bounded, walk_pack
from invarlock_packs.trust import load_trust_store, parse_trust_store

_COMPONENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda c: c not in {".", ".."})
_RELPATH = (
    st.lists(_COMPONENT, min_size=1, max_size=4).map("/".join).filter(lambda p: ":" not in p[:2])
)


@given(
    st.dictionaries(
        _RELPATH, st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), max_size=8
    )
)
def test_checksums_round_trip(digests: dict[str, str]) -> None:
    folded = {p.casefold() for p in digests}
    if len(folded) != len(digests):
        with pytest.raises(ChecksumFormatError):
            parse_checksums(format_checksums(digests))
        return
    assert parse_checksums(format_checksums(digests)) == digests


@pytest.mark.parametrize(
    "line",
    [
        "0" * 64 + "  ../x",
        "0" * 64 + "  /abs",
        "0" * 64 + "  a/./b",
        "0" * 64 + " a",
        "0" * 63 + "  a",
        "0" * 64 + "  a\\b",
        "G" * 64 + "  a",
        "0" * 64 + "  a/",
    ],
)
def test_malformed_checksum_lines_are_rejected(line: str) -> None:
    with pytest.raises(ChecksumFormatError):
        parse_checksums((line + "\n").encode())


def test_duplicates_and_case_collisions_are_rejected() -> None:
    with pytest.raises(ChecksumFormatError, match="twice"):
        parse_checksums(("0" * 64 + "  a\n" + "1" * 64 + "  a\n").encode())
    with pytest.raises(ChecksumFormatError, match="case"):
        parse_checksums(("0" * 64 + "  A.json\n" + "1" * 64 + "  a.json\n").encode())
    with pytest.raises(ChecksumFormatError, match="newline"):
        parse_checksums(("0" * 64 + "  a").encode())


@given(_RELPATH)
def test_generated_relpaths_are_safe(path: str) -> None:
    assert check_relpath(path) == path


@pytest.mark.parametrize("path", ["", "/a", "a/../b", "..", "a//b", "C:/x", "a\x00b", "a/\n"])
def test_unsafe_paths(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_relpath(path)


def test_bounded_reads_refuse_links_specials_and_big_files(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 1025)
    with pytest.raises(UnsafePathError, match="larger"):
        read_bounded(tmp_path / "big", 1024)
    (tmp_path / "link").symlink_to(tmp_path / "big")
    with pytest.raises(UnsafePathError, match="link"):
        read_bounded(tmp_path / "link")
    import os

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafePathError, match="regular"):
        read_bounded(tmp_path / "fifo")
    tree = walk_pack(tmp_path)
    assert tree.files == ("big",)
    assert any("link" in p for p in tree.problems)
    assert any("special" in p for p in tree.problems)


def test_trust_store_parsing() -> None:
    fp = "sha256:" + "a" * 64
    assert parse_trust_store([fp.upper().replace("SHA256", "sha256")]) == {fp}
    assert parse_trust_store({"trusted_signers": [{"fingerprint": fp}]}) == {fp}
    assert parse_trust_store({"fingerprints": [fp]}) == {fp}
    bad: object
    for bad in ({"signers": []}, "x", [{"name": "no fingerprint"}], ["sha256:short"]):
        with pytest.raises(UsageError):
            parse_trust_store(bad)


def test_missing_trust_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_trust_store(tmp_path / "absent.json")


def test_source_repo_from_git_redacts_credentials(tmp_path: Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run(
        [*git, "remote", "add", "origin", "https://user:s3cret@example.invalid/org/repo.git"],
        check=True,
    )
    (tmp_path / "f").write_text("1\n")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    info = collect_source_repo(tmp_path)
    assert info["origin"] == "git"
    assert len(info["commit"]) == 40
    assert info["uri"] == "https://example.invalid/org/repo.git"
    assert "s3cret" not in str(info)
    assert info["dirty"] is False
    (tmp_path / "f").write_text("2\n")
    assert collect_source_repo(tmp_path)["dirty"] is True


def test_source_repo_fails_closed_without_git_or_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INVARLOCK_SOURCE_REPO_MARKER", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(InputError, match="cannot collect source provenance"):
        collect_source_repo(tmp_path)
    (tmp_path / "GPU_RUN_SOURCE.txt").write_text("source_branch=main\n")
    with pytest.raises(InputError, match="source_commit"):
        collect_source_repo(tmp_path)
    (tmp_path / "GPU_RUN_SOURCE.txt").write_text(
        "# snapshot\nsource_commit=" + "ab" * 20 + "\nsource_branch=main\nsource_dirty=1\n"
        "source_uri=https://tok@example.invalid/r.git\n"
    )
    info = collect_source_repo(tmp_path)
    assert info == {
        "origin": "snapshot_marker",
        "commit": "ab" * 20,
        "branch": "main",
        "describe": None,
        "uri": "https://example.invalid/r.git",
        "dirty": True,
    }
    marker = write_json(tmp_path / "other.json", {})
    marker.write_text("source_commit=" + "cd" * 20 + "\n")
    monkeypatch.setenv("INVARLOCK_SOURCE_REPO_MARKER", str(marker))
    assert collect_source_repo(tmp_path)["commit"] == "cd" * 20


def test_environment_has_versions_but_no_environment_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    env = collect_environment()
    assert env["packages"]["invarlock-packs"] == "0.1.0"
    assert "hf_secret_value" not in str(env)


def test_redact_url_keeps_plain_urls() -> None:
    assert redact_url("git@example.invalid:org/repo.git") == "git@example.invalid:org/repo.git"
    assert redact_url("https://example.invalid/x") == "https://example.invalid/x"
