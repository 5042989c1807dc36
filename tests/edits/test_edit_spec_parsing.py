"""Edit spec strings, typed parameters, scopes and the :clean: sentinel."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.editing import EditSpec
from invarlock_core.errors import ConfigError, InputError, SchemaError, UsageError
from invarlock_edits.builtin_edits import FP8_QUANT, LOWRANK_SVD, MAGNITUDE_PRUNE, QUANT_RTN
from invarlock_edits.checkpoint import Checkpoint
from invarlock_edits.params import parse_arguments
from invarlock_edits.scopes import parse_scope
from invarlock_edits.tuned_params import TUNED_PARAMS_ENV


@pytest.fixture(scope="module")
def llama(tiny_model_dir: Callable[[str], Path]) -> Checkpoint:
    return Checkpoint.open(tiny_model_dir("llama"))


@pytest.mark.parametrize(
    ("edit", "text", "expected"),
    [
        (
            QUANT_RTN,
            "quant_rtn:4:32:all",
            {"bits": 4, "group_size": 32, "symmetric": True, "scope": "all"},
        ),
        (
            QUANT_RTN,
            "quant_rtn:8:all",
            {"bits": 8, "group_size": 128, "symmetric": True, "scope": "all"},
        ),
        (
            QUANT_RTN,
            "quant_rtn:bits=3:symmetric=false:ffn",
            {"bits": 3, "symmetric": False, "scope": "ffn"},
        ),
        (
            FP8_QUANT,
            "fp8_quant:e5m2:all",
            {"format": "e5m2", "per_tensor_scale": False, "scope": "all"},
        ),
        (MAGNITUDE_PRUNE, "magnitude_prune:0.5:all", {"prune_level": 0.5, "scope": "all"}),
        (LOWRANK_SVD, "lowrank_svd:32:all", {"rank": 32, "power_iters": 2, "scope": "all"}),
        (LOWRANK_SVD, "lowrank_svd:16:ffn@layer=1", {"rank": 16, "scope": "ffn@layer=1"}),
        (MAGNITUDE_PRUNE, "magnitude_prune", {"prune_level": 0.5, "scope": "ffn"}),
    ],
)
def test_seed_spec_strings_parse(
    edit, text: str, expected: dict[str, object], llama: Checkpoint
) -> None:  # type: ignore[no-untyped-def]
    resolved = edit.resolve(EditSpec.parse(text), llama)
    for key, value in expected.items():
        actual = resolved.params[key]
        assert (actual.text if key == "scope" else actual) == value


def test_resolved_spec_is_explicit_and_reparses_to_the_same_parameters(llama: Checkpoint) -> None:
    first = QUANT_RTN.resolve(EditSpec.parse("quant_rtn:4:32:all"), llama)
    assert first.resolved_spec == "quant_rtn:bits=4:group_size=32:symmetric=true:all"
    again = QUANT_RTN.resolve(EditSpec.parse(first.resolved_spec), llama)
    assert again.params["bits"] == 4
    assert again.params["group_size"] == 32
    assert again.resolved_spec == first.resolved_spec


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("quant_rtn:99:all", "invalid bits '99': expected an integer >= 2 and <= 8"),
        ("quant_rtn:four:all", "invalid bits 'four'"),
        ("quant_rtn:4:32:true:5:all", "unexpected argument(s) '5'"),
        ("quant_rtn:4:32:true:all:extra", "invalid scope 'extra'"),
        ("quant_rtn:4:sideways", "invalid group_size 'sideways'"),
        ("quant_rtn:4:sideways", "(scope: ffn|attn|router|embed|all[@layer=N])"),
        (
            "quant_rtn:4:32:true:sideways",
            "unknown group 'sideways'; valid: ffn, attn, router, embed, all",
        ),
        ("fp8_quant:e9m9:all", "invalid format 'e9m9': expected one of e4m3fn, e5m2"),
        ("magnitude_prune:1.5:all", "expected a number > 0 and <= 1"),
        ("magnitude_prune:0:all", "expected a number > 0 and <= 1"),
        ("magnitude_prune:nan:all", "invalid prune_level 'nan'"),
        ("lowrank_svd:0:all", "invalid rank '0'"),
        ("quant_rtn:bits=4:bits=5", "bits is given twice"),
        ("quant_rtn:4:ffn@layer=x", "bad layer 'x'"),
        ("quant_rtn:4:ffn@depth=3", "expected @layer=N"),
    ],
)
def test_bad_parameters_raise_one_line_usage_errors(
    text: str, fragment: str, llama: Checkpoint
) -> None:
    spec = EditSpec.parse(text)
    edit = {e.name: e for e in (QUANT_RTN, FP8_QUANT, MAGNITUDE_PRUNE, LOWRANK_SVD)}[spec.name]
    with pytest.raises(UsageError) as info:
        edit.resolve(spec, llama)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_usage_line_names_every_parameter() -> None:
    with pytest.raises(
        UsageError, match=r"usage: quant_rtn\[:bits\[:group_size\[:symmetric\]\]\]\[:scope\]"
    ):
        parse_arguments("quant_rtn", QUANT_RTN.specs, ["x"])


def test_scope_groups_select_families(llama: Checkpoint) -> None:
    ffn = {i.name for i in parse_scope("ffn").select(llama)}
    attn = {i.name for i in parse_scope("attn").select(llama)}
    everything = {i.name for i in parse_scope("all").select(llama)}
    assert ffn
    assert all(".mlp." in name for name in ffn)
    assert attn
    assert all(".self_attn." in name for name in attn)
    assert everything == ffn | attn
    assert not any("norm" in name or "embed" in name for name in everything)
    embed = {i.name for i in parse_scope("embed").select(llama)}
    assert embed == {"model.embed_tokens.weight", "lm_head.weight"}


def test_layer_filters_select_blocks(llama: Checkpoint) -> None:
    last = {i.name for i in parse_scope("ffn@layer=1").select(llama)}
    assert last
    assert all(name.startswith("model.layers.1.") for name in last)
    assert {i.name for i in parse_scope("ffn@layer=-1").select(llama)} == last
    both = {i.name for i in parse_scope("attn+ffn@layer=0-1").select(llama)}
    assert both == {i.name for i in parse_scope("all").select(llama)}
    with pytest.raises(UsageError, match="the model has 2 layers"):
        parse_scope("ffn@layer=31").select(llama)


def _write(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_clean_sentinel_resolves_from_the_environment_file(
    llama: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tuned = _write(tmp_path / "tuned.json", {"edits": {"quant_rtn": {"bits": 4, "group_size": 32}}})
    monkeypatch.setenv(TUNED_PARAMS_ENV, str(tuned))
    resolved = QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean"), llama)
    assert (resolved.params["bits"], resolved.params["group_size"]) == (4, 32)
    assert resolved.params["scope"].text == "ffn"  # clean edits are FFN-only by default
    assert resolved.tuned is not None
    assert resolved.tuned["digest"].startswith("sha256:")
    explicit_scope = QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean:all"), llama)
    assert explicit_scope.params["scope"].text == "all"


def test_clean_sentinel_prefers_per_model_entries_and_the_flat_form(
    llama: Checkpoint, tmp_path: Path
) -> None:
    tuned = _write(
        tmp_path / "tuned.json",
        {
            "schema_version": 1,
            "fp8_quant": {"format": "e5m2"},
            "edits": {"magnitude_prune": {"prune_level": 0.12}},
            "models": {llama.path.name.upper(): {"magnitude_prune": {"prune_level": 0.3}}},
        },
    )
    pruned = MAGNITUDE_PRUNE.resolve(
        EditSpec.parse("magnitude_prune:clean:ffn"), llama, tuned_params=tuned
    )
    assert pruned.params["prune_level"] == 0.3
    fp8 = FP8_QUANT.resolve(EditSpec.parse("fp8_quant:clean"), llama, tuned_params=tuned)
    assert fp8.params["format"] == "e5m2"


def test_clean_sentinel_errors_are_clear(
    llama: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TUNED_PARAMS_ENV, raising=False)
    with pytest.raises(
        InputError, match="needs tuned parameters: pass --tuned-params FILE or set PACK_TUNED"
    ):
        QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean:ffn"), llama)
    with pytest.raises(InputError, match="does not exist"):
        QUANT_RTN.resolve(
            EditSpec.parse("quant_rtn:clean"), llama, tuned_params=tmp_path / "nope.json"
        )
    other = _write(tmp_path / "other.json", {"edits": {"fp8_quant": {"format": "e5m2"}}})
    with pytest.raises(ConfigError, match=r"has no parameters for quant_rtn .* it has: fp8_quant"):
        QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean"), llama, tuned_params=other)
    bad_value = _write(tmp_path / "bad.json", {"edits": {"quant_rtn": {"bits": 40}}})
    with pytest.raises(UsageError, match="invalid bits 40"):
        QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean"), llama, tuned_params=bad_value)
    bad_shape = _write(tmp_path / "shape.json", {"edits": {"quant_rtn": [4, 32]}})
    with pytest.raises(SchemaError, match="tuned_edit_params"):
        QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean"), llama, tuned_params=bad_shape)
    unknown = _write(tmp_path / "unknown.json", {"edits": {"quant_rtn": {"bitz": 4}}})
    with pytest.raises(
        UsageError, match="'bitz' is not a parameter of quant_rtn; valid: bits, group_size"
    ):
        QUANT_RTN.resolve(EditSpec.parse("quant_rtn:clean"), llama, tuned_params=unknown)


def test_injections_do_not_take_the_clean_sentinel(llama: Checkpoint) -> None:
    from invarlock_edits.injections import INJECTIONS

    nan = next(e for e in INJECTIONS if e.name == "nan_injection")
    with pytest.raises(UsageError, match="no tuned clean parameters"):
        nan.resolve(EditSpec.parse("nan_injection:clean"), llama)
