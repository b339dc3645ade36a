"""``eas registry`` (logins the server pulls with), ``eas asset`` (named images and data sets) and
``eas image build`` (the docker runtime's images, built on this host).

The registry and asset commands talk to the server's ``/api/v2/registries`` and ``/api/v2/assets``
(server/app.py). A password is read from standard input (``--password-stdin``), never from the
command line, so it stays out of shell history and the process list. Every subcommand is one row
of ``COMMANDS``: its arguments, its handler, and whether it talks to a server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_eas.cli import _client, _print_json, _table, _when, add_client_options
from airflow_eas.errors import InvalidSpec
from airflow_eas.server.image.build import DEFAULT, TARGETS, build


def _call(args: argparse.Namespace, method: str, path: str, body: dict | None = None):
    return _client(args)._call(method, f"/api/v2/{path}", json=body)


def cmd_registry_login(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else ""
    if not password:
        raise InvalidSpec("no password: pipe it in with --password-stdin (e.g. `cat pw | eas registry login ...`)")
    out = _call(args, "PUT", f"registries/{quote(args.registry, safe='')}",
                {"username": args.username, "password": password})
    print(f"login for {out['registry']} stored (user {out['username']}); deploys pull from it with it")
    return 0


def cmd_registry_list(args: argparse.Namespace) -> int:
    rows = _call(args, "GET", "registries")["registries"]
    if args.json:
        _print_json(rows)
    else:
        print(_table([[r["registry"], r["username"]] for r in rows], ["REGISTRY", "USER"]) if rows
              else "no registry logins")
    return 0


def cmd_registry_logout(args: argparse.Namespace) -> int:
    _call(args, "DELETE", f"registries/{quote(args.registry, safe='')}")
    print(f"login for {args.registry} removed")
    return 0


def cmd_asset_create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "type": args.type, "uri": args.uri, "description": args.description,
            "version": args.version}
    if args.update:
        out = _call(args, "PUT", f"assets/{args.name}", body)
    else:
        out = _call(args, "POST", "assets", body)
    print(f"asset {out['name']} ({out['type']}, {out['version']}) -> {out['uri']}; use it as \"asset:{out['name']}\"")
    return 0


def cmd_asset_list(args: argparse.Namespace) -> int:
    rows = _call(args, "GET", "assets")["assets"]
    if args.json:
        _print_json(rows)
        return 0
    table = [[a["name"], a["type"], a["version"], a["uri"], ", ".join(a["used_by"]) or "-"] for a in rows]
    print(_table(table, ["NAME", "TYPE", "VERSION", "URI", "USED BY"]) if rows else "no assets")
    return 0


def cmd_asset_desc(args: argparse.Namespace) -> int:
    a = _call(args, "GET", f"assets/{args.name}")
    if args.json:
        _print_json(a)
        return 0
    fields = [("Name", a["name"]), ("Type", a["type"]), ("URI", a["uri"]), ("Version", a["version"]),
              ("Description", a["description"] or "-"), ("Used by", ", ".join(a["used_by"]) or "-"),
              ("Updated", _when(a["updated"]))]
    for key, value in fields:
        print(f"{key.ljust(11)}  {value}")
    return 0


def cmd_asset_delete(args: argparse.Namespace) -> int:
    _call(args, "DELETE", f"assets/{args.name}")
    print(f"asset {args.name} deleted")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    build(args.names)
    print(f"built (or up to date): {', '.join(args.names)}")
    return 0


Arg = tuple[tuple[str, ...], dict[str, Any]]
JSON: Arg = (("--json",), {"action": "store_true", "help": "machine-readable output"})
NAME: Arg = (("name",), {})
REGISTRY: Arg = (("registry",), {"help": "host[:port], e.g. registry.example.com or 127.0.0.1:5000"})


@dataclass(frozen=True)
class Sub:
    """One ``eas GROUP NAME`` subcommand."""

    name: str
    help: str
    func: Callable[[argparse.Namespace], int]
    args: tuple[Arg, ...] = ()
    client: bool = True  # talks to a server: takes --endpoint and --token
    epilog: str = ""


IMAGE_NAMES: Arg = (("names",), {"nargs": "*", "default": list(DEFAULT), "metavar": "NAME",
                                  "help": f"what to build (default: {' '.join(DEFAULT)}), from the list below"})


COMMANDS: dict[str, tuple[str, tuple[Sub, ...]]] = {
    "registry": ("registry logins the server pulls images with", (
        Sub("login", "store a login for a registry (password from stdin)", cmd_registry_login, (
            REGISTRY, (("-u", "--username"), {"required": True}),
            (("--password-stdin",), {"action": "store_true", "help": "read the password from standard input"}))),
        Sub("list", "registries with a stored login (no passwords)", cmd_registry_list, (JSON,)),
        Sub("logout", "forget a registry's login", cmd_registry_logout, (REGISTRY,)),
    )),
    "asset": ("named images and warm-up data, used as \"asset:NAME\" in specs", (
        Sub("create", "register an image or a data set under a name", cmd_asset_create, (
            NAME, (("--type",), {"required": True, "choices": ["image", "data"]}),
            (("--uri",), {"required": True, "help": "image reference, or data URI (file://, oss://, http(s)://)"}),
            (("--description",), {"default": ""}), (("--version",), {"default": "v1"}),
            (("--update",), {"action": "store_true", "help": "replace an existing asset of that name"}))),
        Sub("list", "list assets and the services using them", cmd_asset_list, (JSON,)),
        Sub("desc", "describe an asset", cmd_asset_desc, (NAME, JSON)),
        Sub("delete", "delete an asset no service uses", cmd_asset_delete, (NAME,)),
    )),
    "image": ("the docker runtime's images, built here offline (debootstrap, docker import, docker build)", (
        Sub("build", "build images from the files shipped in this package, skipping what is up to date",
            cmd_image_build, (IMAGE_NAMES,), client=False,
            epilog="images:\n" + "\n".join(f"  {name:<18} {what}" for name, what in TARGETS.items())),
    )),
}


def add_image_commands(sub: argparse._SubParsersAction) -> None:
    for command, (help_, subs) in COMMANDS.items():
        group = sub.add_parser(command, help=help_).add_subparsers(dest=f"{command}_command", required=True)
        for s in subs:
            p = group.add_parser(s.name, help=s.help, description=s.help, epilog=s.epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
            for flags, kwargs in s.args:
                p.add_argument(*flags, **kwargs)
            if s.client:
                add_client_options(p)
            p.set_defaults(func=s.func)
