"""The plugin manager factory, registries, allow/block lists and ``invarlock plugins list``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from invarlock_core import hookimpl
from invarlock_core.editing import EditParameter, EditSpec
from invarlock_core.errors import PluginError, UsageError
from invarlock_core.plugins import BUILTIN_PLUGINS, Registries, get_plugin_manager, plugin_infos


@attrs.frozen
class _Edit:
    name: str = "throwaway_edit"
    summary: str = "does nothing"
    artifact_class: str = "validation_subject_checkpoint"
    parameters: tuple[EditParameter, ...] = ()

    def apply(self, spec: EditSpec, *, baseline: Path, out: Path, seed: int) -> Mapping[str, Any]:
        return {}


class _Plugin:
    @hookimpl
    def invarlock_register_edits(self, register: Callable[[Any], None]) -> None:
        register(_Edit())


def test_throwaway_plugin_registers_and_unregisters() -> None:
    pm = get_plugin_manager(entry_points=False)
    plugin = _Plugin()
    pm.register(plugin, name="throwaway")
    registries = Registries.from_plugin_manager(pm)
    assert "throwaway_edit" in registries.edits
    assert registries.edits.registration("throwaway_edit").plugin == "throwaway"
    info = {i.name: i for i in plugin_infos(pm, registries)}["throwaway"]
    assert info.registers == {"edits": ["throwaway_edit"]}
    assert info.hooks == ("invarlock_register_edits",)
    pm.unregister(plugin)
    assert "throwaway_edit" not in Registries.from_plugin_manager(pm).edits


def test_duplicate_names_are_refused() -> None:
    pm = get_plugin_manager(entry_points=False)
    pm.register(_Plugin(), name="one")
    pm.register(_Plugin(), name="two")
    with pytest.raises(PluginError, match="registered twice"):
        Registries.from_plugin_manager(pm)


def test_unknown_name_lists_valid_ones() -> None:
    pm = get_plugin_manager(entry_points=False)
    pm.register(_Plugin(), name="one")
    with pytest.raises(PluginError, match="valid: throwaway_edit"):
        Registries.from_plugin_manager(pm).edits.get("nope")


def test_builtins_are_always_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_LOAD_PLUGINS", "")
    pm = get_plugin_manager()
    assert {name for name, _ in pm.list_name_plugin()} == set(BUILTIN_PLUGINS)


def test_allow_and_block_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    names = sorted(ep.name for ep in importlib.metadata.entry_points(group="invarlock"))
    if not names:
        pytest.skip("no entry-point plugins installed")
    monkeypatch.setenv("INVARLOCK_LOAD_PLUGINS", names[0])
    loaded = {name for name, _ in get_plugin_manager().list_name_plugin()}
    assert loaded == set(BUILTIN_PLUGINS) | {names[0]}
    monkeypatch.delenv("INVARLOCK_LOAD_PLUGINS")
    monkeypatch.setenv("INVARLOCK_DISABLE_PLUGINS", names[0])
    loaded = {name for name, _ in get_plugin_manager().list_name_plugin()}
    assert names[0] not in loaded
    assert set(names[1:]) <= loaded


def test_edit_spec_parsing() -> None:
    assert EditSpec.parse("quant_rtn:4:32:all") == EditSpec("quant_rtn", ("4", "32", "all"))
    assert str(EditSpec.parse("fp8_quant:e5m2:ffn")) == "fp8_quant:e5m2:ffn"
    for bad in ("", ":4", "quant_rtn::all"):
        with pytest.raises(UsageError, match="invalid edit spec"):
            EditSpec.parse(bad)


def test_plugins_list_cli_json(invarlock: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = invarlock("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    infos = {info["name"]: info for info in json.loads(result.stdout)}
    assert set(BUILTIN_PLUGINS) <= set(infos)
    core = infos["invarlock_core.commands"]
    assert core["distribution"] == "invarlock-core"
    assert core["builtin"] is True
    assert "invarlock_register_commands" in core["hooks"]


def test_plugins_list_cli_text(invarlock: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = invarlock("plugins", "list")
    assert result.returncode == 0
    assert "invarlock_core.commands  (invarlock-core" in result.stdout


def test_bad_flag_is_one_line_exit_2(invarlock: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = invarlock("plugins", "list", "--bogus")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_broken_plugin_is_reported_not_crashed(
    tmp_path: Path,
    invarlock: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # A real distribution on sys.path whose entry point fails to import.
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[invarlock]\nbroken_plugin.x = broken_plugin_missing\n")
    result = invarlock("plugins", "list", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert "plugin broken_plugin.x" in result.stderr
    assert "INVARLOCK_DISABLE_PLUGINS=broken_plugin.x" in result.stderr
    assert "Traceback" not in result.stderr
    ok = invarlock(
        "plugins", "list", env={"PYTHONPATH": str(tmp_path), "INVARLOCK_DISABLE_PLUGINS": "broken_plugin.x"}
    )
    assert ok.returncode == 0


class _WrongSignature:
    @hookimpl
    def invarlock_register_edits(self, registry: Callable[[Any], None]) -> None:  # the hook offers `register`
        registry(_Edit())


class _Misspelt:
    @hookimpl
    def invarlock_register_edit(self, register: Callable[[Any], None]) -> None:
        register(_Edit())


class _NoArguments:
    calls = 0

    @hookimpl
    def invarlock_register_edits(self) -> None:
        type(self).calls += 1


def test_a_hook_with_the_wrong_signature_is_refused_at_load() -> None:
    pm = get_plugin_manager(entry_points=False)
    with pytest.raises(PluginError) as caught:
        pm.register_module(_WrongSignature(), "wrong_sig", "wrong-sig", "0.1")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("plugin wrong_sig ")
    assert "registry" in message
    assert "INVARLOCK_DISABLE_PLUGINS=wrong_sig" in message
    assert not pm.has_plugin("wrong_sig")


def test_an_unknown_hook_is_refused_at_load() -> None:
    pm = get_plugin_manager(entry_points=False)
    pm.register(_Misspelt(), name="misspelt")
    with pytest.raises(PluginError, match=r"^plugin misspelt .*invarlock_register_edit'") as caught:
        pm.check_hooks()
    assert "\n" not in str(caught.value)


def test_hooks_are_called_through_pluggy() -> None:
    # pluggy passes only the arguments an implementation declares; a direct call would pass
    # register= and crash with a TypeError.
    pm = get_plugin_manager(entry_points=False)
    pm.register_module(_NoArguments(), "no_args", "no-args", "0.1")
    before = _NoArguments.calls
    Registries.from_plugin_manager(pm)
    assert _NoArguments.calls == before + 1


def test_each_plugin_is_credited_with_its_own_registrations() -> None:
    pm = get_plugin_manager(entry_points=False)
    pm.register(_Plugin(), name="first")

    @attrs.frozen
    class _Other:
        @hookimpl
        def invarlock_register_edits(self, register: Callable[[Any], None]) -> None:
            register(attrs.evolve(_Edit(), name="other_edit"))

    pm.register(_Other(), name="second")
    registries = Registries.from_plugin_manager(pm)
    assert registries.edits.registration("throwaway_edit").plugin == "first"
    assert registries.edits.registration("other_edit").plugin == "second"


def test_an_installed_plugin_with_a_wrong_signature_is_one_line_exit_2(
    tmp_path: Path,
    invarlock: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    (tmp_path / "wrong_sig_plugin.py").write_text(
        "from invarlock_core import hookimpl\n\n"
        "@hookimpl\n"
        "def invarlock_register_edits(registry):\n"
        "    pass\n"
    )
    dist = tmp_path / "wrong_sig_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wrong-sig-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[invarlock]\nwrong_sig.edits = wrong_sig_plugin\n")
    result = invarlock("plugins", "list", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("error: plugin wrong_sig.edits ")
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
