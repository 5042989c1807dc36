"""Dataset providers are plugins; each fails with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock_core.datasets import DatasetOptions, resolve_dataset_options
from invarlock_core.datasets.builtin import builtin_providers
from invarlock_core.datasets.local_jsonl import LocalJsonlProvider
from invarlock_core.datasets.sample import SampleProvider
from invarlock_core.errors import ConfigError, DatasetError
from invarlock_core.plugins import get_plugin_manager, get_registries


def test_builtin_providers_are_registered_as_a_plugin() -> None:
    registries = get_registries(get_plugin_manager(entry_points=False))
    assert {"sample", "local_jsonl", "hf_text", "wikitext2"} <= set(registries.datasets.names())
    assert registries.datasets.registration("sample").plugin == "invarlock_core.datasets.builtin"
    assert len({p.name for p in builtin_providers()}) == 4


def test_sample_is_offline_licensed_and_stable() -> None:
    texts = SampleProvider().load(DatasetOptions())
    assert texts.license == "CC0-1.0"
    assert texts.source.endswith("sample_en.txt")
    assert len(texts.texts) > 50
    assert sum(len(t) for t in texts.texts) > 60_000
    assert texts.revision is not None
    assert texts.revision.startswith("sha256:")
    assert SampleProvider().load(DatasetOptions(max_samples=3)).texts == texts.texts[:3]


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_local_jsonl_reads_files_dirs_and_globs(tmp_path: Path) -> None:
    _write(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    _write(tmp_path / "b.jsonl", [{"body": "x", "text": "three"}])
    provider = LocalJsonlProvider()
    by_dir = provider.load(DatasetOptions(data_path=str(tmp_path)))
    assert by_dir.texts == ("one", "two", "three")
    by_glob = provider.load(DatasetOptions(data_path=str(tmp_path / "*.jsonl"), max_samples=2))
    assert by_glob.texts == ("one", "two")
    assert by_dir.revision == by_glob.revision
    other = provider.load(DatasetOptions(data_path=str(tmp_path / "b.jsonl"), text_field="body"))
    assert other.texts == ("x",)


@pytest.mark.parametrize(
    ("rows", "spec", "message"),
    [
        (None, "missing.jsonl", "does not exist"),
        ([{"text": ""}], "d.jsonl", "holds no non-empty texts"),
        ([{"other": "x"}], "d.jsonl", "has no string field 'text'"),
        (None, "*.nothing", "no files match"),
    ],
)
def test_local_jsonl_errors_are_one_line(
    tmp_path: Path, rows: list[object] | None, spec: str, message: str
) -> None:
    if rows is not None:
        _write(tmp_path / spec, rows)
    with pytest.raises(DatasetError, match=message) as info:
        LocalJsonlProvider().load(DatasetOptions(data_path=str(tmp_path / spec)))
    assert "\n" not in str(info.value)


def test_local_jsonl_bad_json_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{nope\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.jsonl:2 is not valid JSON"):
        LocalJsonlProvider().load(DatasetOptions(data_path=str(tmp_path / "bad.jsonl")))


def test_hf_offline_miss_is_one_clear_line(tmp_path: Path) -> None:
    registries = get_registries(get_plugin_manager(entry_points=False))
    with pytest.raises(DatasetError) as info:
        registries.datasets.get("wikitext2").load(DatasetOptions(cache_dir=str(tmp_path)))
    text = str(info.value)
    assert "not in the local cache" in text
    assert "--net" in text
    assert "\n" not in text


def test_env_and_raw_provider_mapping(tmp_path: Path) -> None:
    env = {
        "INVARLOCK_DATASET": "local_jsonl",
        "INVARLOCK_LOCAL_JSONL_FILE": "/data/a.jsonl",
        "INVARLOCK_LOCAL_JSONL_MAX_SAMPLES": "7",
    }
    name, options = resolve_dataset_options(None, {}, env=env)
    assert name == "local_jsonl"
    assert options.data_path == "/data/a.jsonl"
    assert options.max_samples == 7
    name, options = resolve_dataset_options(None, {"data_path": "/flag.jsonl", "max_samples": None}, env=env)
    assert options.data_path == "/flag.jsonl"
    assert options.max_samples == 7
    raw = {"INVARLOCK_DATASET_PROVIDER_JSON": json.dumps({"kind": "hf_text", "name": "c4"})}
    name, options = resolve_dataset_options(None, {}, env=raw)
    assert (name, options.name) == ("hf_text", "c4")
    assert resolve_dataset_options(None, {}, env={})[0] == "sample"
    with pytest.raises(ConfigError, match="max_samples"):
        resolve_dataset_options("local_jsonl", {}, env={"INVARLOCK_LOCAL_JSONL_MAX_SAMPLES": "x"})
    with pytest.raises(ConfigError, match="unknown keys"):
        resolve_dataset_options(None, {}, env={"INVARLOCK_DATASET_PROVIDER_JSON": '{"bogus": 1}'})
