"""``eas registry`` (logins the server pulls with) and ``eas asset`` (named images and data sets).

Both talk to the server's ``/api/v2/registries`` and ``/api/v2/assets`` (server/app.py).
A password is read from standard input (``--password-stdin``), never from the command line,
so it stays out of shell history and the process list.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

from airflow_eas.cli import _client, _print_json, _table, _when
from airflow_eas.errors import InvalidSpec


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


def add_image_commands(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser("registry", help="registry logins the server pulls images with")
    r = reg.add_subparsers(dest="registry_command", required=True)
    p = r.add_parser("login", help="store a login for a registry (password from stdin)")
    p.add_argument("registry", help="host[:port], e.g. registry.example.com or 127.0.0.1:5000")
    p.add_argument("-u", "--username", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_registry_login)
    p = r.add_parser("list", help="registries with a stored login (no passwords)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_registry_list)
    p = r.add_parser("logout", help="forget a registry's login")
    p.add_argument("registry")
    p.set_defaults(func=cmd_registry_logout)

    ast = sub.add_parser("asset", help="named images and warm-up data, used as \"asset:NAME\" in specs")
    a = ast.add_subparsers(dest="asset_command", required=True)
    p = a.add_parser("create", help="register an image or a data set under a name")
    p.add_argument("name")
    p.add_argument("--type", required=True, choices=["image", "data"])
    p.add_argument("--uri", required=True, help="image reference, or data URI (file://, oss://, http(s)://)")
    p.add_argument("--description", default="")
    p.add_argument("--version", default="v1")
    p.add_argument("--update", action="store_true", help="replace an existing asset of that name")
    p.set_defaults(func=cmd_asset_create)
    p = a.add_parser("list", help="list assets and the services using them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_asset_list)
    p = a.add_parser("desc", help="describe an asset")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_asset_desc)
    p = a.add_parser("delete", help="delete an asset no service uses")
    p.add_argument("name")
    p.set_defaults(func=cmd_asset_delete)
    for group in (r, a):
        for p in group.choices.values():
            p.add_argument("--endpoint", help="control plane URL (env EAS_ENDPOINT)")
            p.add_argument("--token", help="admin token (env EAS_TOKEN)")
