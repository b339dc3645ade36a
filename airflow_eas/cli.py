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
from airflow_eas.platform.base import SERIES_WINDOWS, Platform, Series
from airflow_eas.platform.client import EasClient
from airflow_eas.spec import apply_overrides, check_name, load_spec_file, parse_spec


def _client(args: argparse.Namespace) -> Platform:
    """The one place a command's platform is chosen: a cluster with --kubeconfig, else an eas server."""
    if getattr(args, "kubeconfig", None):
        from airflow_eas.platform.kubernetes import KubernetesPlatform

        return KubernetesPlatform.from_kubeconfig(args.kubeconfig, args.context, args.namespace, _cluster_extras())
    endpoint = args.endpoint or os.environ.get("EAS_ENDPOINT", "")
    token = args.token or os.environ.get("EAS_TOKEN", "")
    if not endpoint:
        raise InvalidSpec("no endpoint: pass --endpoint URL or set EAS_ENDPOINT")
    if not token:
        raise InvalidSpec("no token: pass --token T or set EAS_TOKEN (the server writes DATA_DIR/admin_token)")
    return EasClient(endpoint, token)


def _cluster_extras() -> dict[str, Any]:
    """The kubernetes connection's extras (gateway, Prometheus, images) for the CLI: env EAS_KUBERNETES_EXTRAS."""
    raw = os.environ.get("EAS_KUBERNETES_EXTRAS", "").strip()
    if not raw:
        return {}
    try:
        extras = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidSpec(f"EAS_KUBERNETES_EXTRAS is not valid JSON: {exc}") from None
    if not isinstance(extras, dict):
        raise InvalidSpec("EAS_KUBERNETES_EXTRAS must be a JSON object, e.g. {\"gateway_name\": \"eg\"}")
    return extras


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
    if args.instance_user is not None:
        config.instance_user = args.instance_user
    if args.model_server_image:
        config.model_server_image = args.model_server_image
    if args.max_body_mb is not None:
        if args.max_body_mb <= 0:
            raise InvalidSpec(f"--max-body-mb {args.max_body_mb:g}: give a size in MB above 0")
        config.max_body_mb = args.max_body_mb
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


def _simple(action: str):
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
    client = _client(args)
    group = client.describe_group(args.group).to_dict()
    if args.json:
        _print_json(group)
        return 0
    print(f"Group     {group['name']}\nEndpoint  {group['endpoint']}\nToken     {group['token']}")
    lease = client.get_lease(args.group)
    if lease is not None:  # who is changing the group, and what the platform did about it
        reason = f" ({lease.reason})" if lease.reason else ""
        print(f"Lease     {lease.holder}, {lease.state}, stable member {lease.stable or '-'}{reason}")
    print()
    rows = [[m["service"], m["weight"]] for m in group["members"]]
    print(_table(rows, ["MEMBER", "WEIGHT"]))
    events = group.get("events") or []
    if events:
        print("\nEvents")
        for e in events[-10:]:
            print(f"  {time.strftime('%H:%M:%S', time.localtime(e['time']))} {e['level']:<7} {e['message']}")
    return 0


def cmd_group_traffic(args: argparse.Namespace) -> int:
    group = _client(args).set_traffic(args.group, _weights(args.weights))
    print(", ".join(f"{m.service}={m.weight}" for m in group.members))
    if group.accepted is False:
        print(f"eas: the gateway has not accepted the route of group {group.name}", file=sys.stderr)
        return 1
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
    if args.series:
        return _print_series(_client(args).series(args.name, args.series), args.json)
    m = _client(args).metrics(args.name, args.window)
    if args.json:
        _print_json(m.to_dict())
        return 0

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    print(f"{m.service}: last {m.window_seconds} s")
    print(_table([[m.requests, f"{m.rps:.1f}", m.errors, f"{m.error_rate:.2%}", ms(m.p50_ms), ms(m.p95_ms),
                   ms(m.p99_ms)]], ["REQUESTS", "RPS", "ERRORS", "ERROR_RATE", "P50", "P95", "P99"]))
    if m.statuses:
        print("by status: " + ", ".join(f"{code} {n}" for code, n in sorted(m.statuses.items())))
    return 0


def _print_series(series: Series, as_json: bool) -> int:
    if as_json:
        _print_json(series.to_dict())
        return 0
    cols = series.points

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    print(f"{series.name}: last {series.window_seconds} s, one point per {series.step_seconds} s")
    rows = [
        [time.strftime("%H:%M:%S", time.localtime(t)), cols["requests"][i], num(cols["rps"][i], ".1f"),
         cols["errors"][i], num(cols["error_rate"][i], ".2%"), num(cols["p50_ms"][i], ".0f"),
         num(cols["p95_ms"][i], ".0f"), num(cols["p99_ms"][i], ".0f")]
        for i, t in enumerate(cols["t"])
    ]
    print(_table(rows, ["TIME", "REQUESTS", "RPS", "ERRORS", "ERROR_RATE", "P50_MS", "P95_MS", "P99_MS"]))
    for instance, usage in series.instances.items():
        if usage["t"]:
            print(f"{instance}: cpu {usage['cpu_percent'][-1]:.1f}%  memory {usage['memory_mb'][-1]:.1f} MB "
                  f"(max {max(usage['memory_mb']):.1f} MB)")
def _weights(items: list[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in items:
        member, sep, raw = item.partition("=")
        if not sep or not raw.strip().isdigit():
            raise InvalidSpec(f"{item!r}: expected MEMBER=WEIGHT with a whole-number weight, e.g. fraud_green=20")
        weights[member] = int(raw)
    return weights


def cmd_render(args: argparse.Namespace) -> int:
    import secrets

    import yaml

    from airflow_eas.platform.kubernetes import ClusterSettings
    from airflow_eas.platform.kubernetes import manifests as m

    namespace = args.render_namespace or args.namespace or "default"
    settings = ClusterSettings.from_extras(_cluster_extras(), namespace=namespace)
    if args.group:
        # argparse hands the first MEMBER=WEIGHT to the optional SPEC.json positional.
        weights = _weights(([args.spec] if args.spec else []) + args.weights)
        if not weights:
            raise InvalidSpec("--group: give the members' weights, e.g. fraud_blue=90 fraud_green=10")
        for member in weights:
            check_name(member, "member")
        check_name(args.group, "group")
        docs = m.group_manifests(args.group, weights, settings, token=secrets.token_urlsafe(24))
    elif args.spec:
        if args.weights:
            raise InvalidSpec(f"unexpected {' '.join(args.weights)}: member weights go with --group")
        spec = load_spec_file(args.spec)
        docs = m.service_manifests(spec, settings, token=spec.token or secrets.token_urlsafe(24))
    else:
        raise InvalidSpec("nothing to render: give SPEC.json, or --group G MEMBER=WEIGHT ...")
    if not args.secrets:
        docs = [m.redact_manifest(d) for d in docs]
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    print(_client(args).logs(args.name, args.lines))
    return 0


# -- parser -------------------------------------------------------------------------------


def add_client_options(p: argparse.ArgumentParser) -> None:
    """Where a command finds its eas server."""
    p.add_argument("--endpoint", help="control plane URL (env EAS_ENDPOINT)")
    p.add_argument("--token", help="admin token (env EAS_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eas", description="EAS-style model serving on one host or a cluster.")
    parser.add_argument("--kubeconfig", help="talk to a Kubernetes cluster with this kubeconfig instead of an "
                        "eas server (extras such as the gateway: env EAS_KUBERNETES_EXTRAS, JSON)")
    parser.add_argument("--context", help="the kubeconfig context (default: its current context)")
    parser.add_argument("--namespace", help="the namespace (default: the context's, else default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client_cmd(name: str, func, help_: str, json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        add_client_options(p)
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
    p.add_argument("--max-body-mb", type=float, default=None,
                   help="largest request body the gateway forwards, in MB (default 32); larger ones get 413")
    p.add_argument("--model-server-image", default=None,
                   help="docker runtime: image of processor deployments (env EAS_MODEL_SERVER_IMAGE, "
                        "default airflow-eas/model-server:latest, built by make image)")
    p.add_argument("--instance-user", default=None,
                   help="process runtime: the user instances run as (env EAS_INSTANCE_USER; default auto: where "
                        "the server runs as root, a uid of its own per service; root: the server's user; NAME: that "
                        "user for every service)")
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
        add_client_options(p)

    p = client_cmd("invoke", cmd_invoke, "send one request through the gateway")
    p.add_argument("name")
    p.add_argument("--data", required=True, help="request body, or @FILE")
    p.add_argument("--timeout", type=float, default=30.0)
    p = client_cmd("metrics", cmd_metrics, "data-plane metrics over a window", True)
    p.add_argument("name")
    p.add_argument("--window", type=int, default=60, help="seconds")
    p.add_argument("--series", nargs="?", const="15m", choices=list(SERIES_WINDOWS),
                   help="10-second points over 15m (default), 1h or 24h instead of one window")
    p = sub.add_parser("render", help="print the Kubernetes manifests of a spec or a group (YAML)")
    p.add_argument("spec", nargs="?", help="an EAS JSON spec")
    p.add_argument("weights", nargs="*", help="with --group: MEMBER=WEIGHT ...")
    p.add_argument("--group", help="render a group's HTTPRoute instead")
    p.add_argument("--namespace", dest="render_namespace", help="the namespace (default: default)")
    p.add_argument("--secrets", action="store_true", help="print Secret values (redacted by default)")
    p.set_defaults(func=cmd_render)
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
    except BrokenPipeError:
        # the reader went away (`eas desc NAME | head`): nothing left to say, and stdout must not be
        # flushed again at exit (that would print the same error)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, never a traceback
        print(f"eas: unexpected error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
