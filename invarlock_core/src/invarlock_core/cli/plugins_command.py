"""``invarlock plugins list [--json]``."""

from __future__ import annotations

import argparse
from typing import Any

from invarlock_core.cli.output import print_json
from invarlock_core.serialization import unstructure

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    plugins = subparsers.add_parser("plugins", help="inspect installed plugins")
    sub = plugins.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="list plugins, their distributions and what they register")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    from invarlock_core.plugins import Registries, get_plugin_manager, plugin_infos

    pm = get_plugin_manager()
    infos = plugin_infos(pm, Registries.from_plugin_manager(pm))
    if args.json:
        print_json([unstructure(info) for info in infos])
        return 0
    for info in infos:
        origin = "built-in" if info.builtin else "entry point"
        print(f"{info.name}  ({info.distribution} {info.version}, {origin})")
        for kind, names in sorted(info.registers.items()):
            print(f"    {kind}: {', '.join(names)}")
        if "invarlock_register_commands" in info.hooks:
            print("    commands: yes")
    return 0
