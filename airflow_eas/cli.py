"""The ``eas`` command (EASCMD-like): tables for people, ``--json`` for scripts.

Every error ends the command with a non-zero exit and one line saying why; no
traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from airflow_eas.errors import EasError, InvalidSpec
from airflow_eas.platform.client import EasClient
from airflow_eas.spec import apply_overrides, load_spec_file, parse_spec


def _client(args: argparse.Namespace) -> EasClient:
    endpoint = args.endpoint or os.environ.get("EAS_ENDPOINT", "")
    token = args.token or os.environ.get("EAS_TOKEN", "")
    if not endpoint:
        raise EasError("no endpoint: pass --endpoint URL or set EAS_ENDPOINT", status=400)
    if not token:
        raise EasError("no token: pass --token T or set EAS_TOKEN (the server writes DATA_DIR/admin_token)",
                       status=400)
    return EasClient(endpoint, token)


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _desc_public(info: dict) -> dict:
    keys = ("name", "status", "endpoint", "token", "group", "instances", "running_instances", "version",
            "instance_list", "reason", "link", "events")
    return {k: info[k] for k in keys if k in info}


# -- commands -----------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> int:
    from airflow_eas.server.app import ServerConfig, serve

    config = ServerConfig(Path(args.data_dir).resolve(), args.api_port, args.gateway_port, args.host, args.runtime)
    if args.model_server_image:
        config.model_server_image = args.model_server_image
    serve(config)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec)
    info = _client(args).create(spec)
    if args.json:
        _print_json(_desc_public(info.to_dict()))
    else:
        print(f"service {info.name} created ({info.status}); endpoint {info.endpoint}")
        print(f"token {info.token}")
    return 0


def cmd_modify(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.spec and args.define:
        raise InvalidSpec("give either -s SPEC.json or -D key=value, not both")
    if args.spec:
        data = json.loads(Path(args.spec).read_text()) if Path(args.spec).exists() else None
        if data is None:
            raise InvalidSpec(f"cannot read spec file {args.spec}")
        data.setdefault("name", args.name)
    elif args.define:
        data = apply_overrides(client.describe(args.name).spec, args.define)
    else:
        raise InvalidSpec("nothing to change: give -s SPEC.json or -D key=value")
    info = client.modify(parse_spec(data))
    if args.json:
        _print_json(_desc_public(info.to_dict()))
    else:
        print(f"service {info.name}: version {info.version} ({info.status})")
    return 0


def _simple(action: str):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        client = _client(args)
        if action == "delete":
            client.delete(args.name)
            print(f"service {args.name} is being deleted")
            return 0
        info = getattr(client, action)(args.name)
        print(f"service {info.name}: {info.status}")
        return 0

    return run


def cmd_scale(args: argparse.Namespace) -> int:
    info = _client(args).scale(args.name, args.instances)
    print(f"service {info.name}: {info.instances} instance(s) wanted, {info.running_instances} running")
    return 0


def cmd_desc(args: argparse.Namespace) -> int:
    info = _client(args).describe(args.name).to_dict()
    if args.json:
        _print_json(_desc_public(info))
        return 0
    fields = [
        ("Name", info["name"]), ("Status", info["status"]), ("Version", info["version"]),
        ("Instances", f"{info['running_instances']}/{info['instances']} running"),
        ("Group", info["group"] or "-"), ("Endpoint", info["endpoint"]), ("Token", info["token"]),
    ]
    if info.get("link"):
        fields.append(("Link", f"{info['link']}  (web app: open it in a browser)"))
    if info.get("reason"):
        fields.append(("Reason", info["reason"]))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    print("\nInstances:")
    rows = [[i["id"], i["address"], i["status"], i["version"], i["restarts"], _when(i["started_at"])]
            for i in info["instance_list"]]
    print(_table(rows, ["ID", "ADDRESS", "STATUS", "VERSION", "RESTARTS", "STARTED"]) if rows else "  (none)")
    print("\nRecent events:")
    for event in info["events"][-10:] or []:
        print(f"  {_when(event['time'])}  {event['level'].upper():7}  {event['message']}")
    if not info["events"]:
        print("  (none)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    services = _client(args).list()
    if args.json:
        _print_json([_desc_public(s.to_dict()) | {"events": None} for s in services])
        return 0
    rows = [[s.name, s.status, f"{s.running_instances}/{s.instances}", s.version, s.group or "-", s.endpoint]
            for s in services]
    print(_table(rows, ["NAME", "STATUS", "RUNNING", "VERSION", "GROUP", "ENDPOINT"]) if rows else "no services")
    return 0


def cmd_group_desc(args: argparse.Namespace) -> int:
    group = _client(args).describe_group(args.group).to_dict()
    if args.json:
        _print_json(group)
        return 0
    print(f"Group     {group['name']}\nEndpoint  {group['endpoint']}\nToken     {group['token']}\n")
    rows = [[m["service"], m["weight"]] for m in group["members"]]
    print(_table(rows, ["MEMBER", "WEIGHT"]))
    return 0


def cmd_group_traffic(args: argparse.Namespace) -> int:
    weights: dict[str, int] = {}
    for item in args.weights:
        member, sep, raw = item.partition("=")
        if not sep or not raw.strip().isdigit():
            raise InvalidSpec(f"{item!r}: expected MEMBER=WEIGHT with a whole-number weight, e.g. fraud_green=20")
        weights[member] = int(raw)
    group = _client(args).set_traffic(args.group, weights)
    print(", ".join(f"{m.service}={m.weight}" for m in group.members))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    data = args.data
    if data.startswith("@"):
        try:
            data = Path(data[1:]).read_text()
        except OSError as exc:
            raise InvalidSpec(f"--data {args.data}: {exc.strerror}") from None
    status, body = _client(args).invoke(args.name, data, timeout=args.timeout)
    sys.stdout.write(body.decode(errors="replace"))
    if not body.endswith(b"\n"):
        sys.stdout.write("\n")
    if status >= 400:
        print(f"eas: {args.name} answered HTTP {status}", file=sys.stderr)
        return 1
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    m = _client(args).metrics(args.name, args.window)
    if args.json:
        _print_json(m.to_dict())
        return 0

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    print(f"{m.service}: last {m.window_seconds} s")
    print(_table([[m.requests, f"{m.rps:.1f}", m.errors, f"{m.error_rate:.2%}", ms(m.p50_ms), ms(m.p95_ms),
                   ms(m.p99_ms)]], ["REQUESTS", "RPS", "ERRORS", "ERROR_RATE", "P50", "P95", "P99"]))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    print(_client(args).logs(args.name, args.lines))
    return 0


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eas", description="EAS-style model serving on one host.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client_cmd(name: str, func, help_: str, json_flag: bool = False) -> argparse.ArgumentParser:  # noqa: ANN001
        p = sub.add_parser(name, help=help_)
        p.add_argument("--endpoint", help="control plane URL (env EAS_ENDPOINT)")
        p.add_argument("--token", help="admin token (env EAS_TOKEN)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    p = sub.add_parser("server", help="run the single-host platform (control plane + HAProxy gateway)")
    p.add_argument("--data-dir", required=True, help="state, logs, admin token and gateway config live here")
    p.add_argument("--api-port", type=int, default=8600)
    p.add_argument("--gateway-port", type=int, default=8700)
    p.add_argument("--host", default="127.0.0.1", help="address both ports bind to")
    p.add_argument("--runtime", default="process", choices=["process", "docker"],
                   help="run instances as local processes or as containers on the local Docker engine")
    p.add_argument("--model-server-image", default=None,
                   help="docker runtime: image of processor deployments (env EAS_MODEL_SERVER_IMAGE, "
                        "default airflow-eas/model-server:latest, built by make image)")
    p.set_defaults(func=cmd_server)

    client_cmd("create", cmd_create, "create a service from an EAS JSON spec", True).add_argument("spec")
    p = client_cmd("modify", cmd_modify, "change a service (rolling update)", True)
    p.add_argument("name")
    p.add_argument("-s", "--spec", help="a whole new spec")
    p.add_argument("-D", dest="define", action="append", default=[], help="key.path=value, e.g. metadata.instance=2")
    for action in ("start", "stop", "delete"):
        client_cmd(action, _simple(action), f"{action} a service").add_argument("name")
    p = client_cmd("scale", cmd_scale, "set a service's instance count")
    p.add_argument("name")
    p.add_argument("instances", type=int)
    client_cmd("desc", cmd_desc, "describe a service", True).add_argument("name")
    client_cmd("list", cmd_list, "list services", True)

    g = sub.add_parser("group", help="service groups").add_subparsers(dest="group_command", required=True)
    p = g.add_parser("desc", help="describe a group")
    p.add_argument("group")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_group_desc)
    p = g.add_parser("traffic", help="set member weights: MEMBER=WEIGHT ...")
    p.add_argument("group")
    p.add_argument("weights", nargs="+")
    p.set_defaults(func=cmd_group_traffic)
    for p in g.choices.values():
        p.add_argument("--endpoint", help="control plane URL (env EAS_ENDPOINT)")
        p.add_argument("--token", help="admin token (env EAS_TOKEN)")

    p = client_cmd("invoke", cmd_invoke, "send one request through the gateway")
    p.add_argument("name")
    p.add_argument("--data", required=True, help="request body, or @FILE")
    p.add_argument("--timeout", type=float, default=30.0)
    p = client_cmd("metrics", cmd_metrics, "data-plane metrics over a window", True)
    p.add_argument("name")
    p.add_argument("--window", type=int, default=60, help="seconds")
    p = client_cmd("logs", cmd_logs, "tail instance logs")
    p.add_argument("name")
    p.add_argument("--lines", type=int, default=100)

    from airflow_eas.cli_images import add_image_commands  # imports this module: only once it is loaded

    add_image_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EasError as exc:
        print(f"eas: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"eas: unexpected error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
