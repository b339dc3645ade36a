"""Signed bodies larger than HAProxy's buffer, checked at the gateway for services that do not check them.

An EAS signature covers the body's MD5. HAProxy 2.6 hashes a body only while it fits one
buffer (16 KB); past that the gateway verifies the signature over the ``Content-MD5`` header
and the body must be checked against that header by someone, or a captured request can be
replayed with any body under the same headers for as long as its Date is fresh. The model
server (processor services) checks it itself. An image service is any program and checks
nothing, so for routes to image services (``Backend.gateway_checks_body``) the gateway does:
a Lua service reads the whole body (up to the body limit), compares its MD5 with the signed
header (401 when they differ) and hands the request, unchanged, to an internal listener on a
unix socket in the gateway's 0700 folder, where it is routed like any request (the same
backends, queues, retries and log lines). Only signed requests over the buffer to image
services take this path; each holds its body in the gateway's memory while it is checked.

The alternatives, measured or weighed here: a larger ``tune.bufsize`` is global (64 KB cost a
third of the gateway's throughput, 1 MB nine tenths) and would still not reach the 32 MB body
limit; refusing such requests would break the SDK's larger payloads that issue 12 fixed.
"""

from __future__ import annotations

from pathlib import Path

from airflow_eas.server.gateway.state import GatewayState, route_key

SERVICE = "eas_checked_body"
MAP = "body_check.map"  # routes whose signed bodies the gateway checks itself
SOCKET = "checked.sock"  # the internal listener: only the server's user can connect to it
SERVER_TIMEOUT_MS = 300_000  # as `timeout server`: an inference may take minutes
MISMATCH_BODY = (
    '{"code":"Unauthorized","message":"EAS signature: the body does not match the Content-MD5 header the '
    'signature covers"}'
)
METHOD_BODY = (
    '{"code":"MethodNotAllowed","message":"a signed request whose body is over 16 KB can be GET, HEAD, POST, '
    'PUT or DELETE"}'
)

# Lua 5.3 in HAProxy 2.6: the headers of a request are {name = {[0] = first, [1] = second, ...}}; the
# HTTP client sends a body only with its content-length given; it has no PATCH
_LUA = """
local HOP = {["content-length"] = true, ["transfer-encoding"] = true, ["connection"] = true,
  ["keep-alive"] = true, ["expect"] = true, ["te"] = true, ["trailer"] = true, ["upgrade"] = true,
  ["proxy-connection"] = true}
local CALLS = {GET = "get", HEAD = "head", POST = "post", PUT = "put", DELETE = "delete"}

local function answer(applet, status, reason, headers, body)
  applet:set_status(status, reason)
  for name, values in pairs(headers) do
    if not HOP[name] then
      for _, value in pairs(values) do applet:add_header(name, value) end
    end
  end
  applet:add_header("content-length", tostring(#body))
  applet:start_response()
  applet:send(body)
end

local function refuse(applet, status, body, extra)
  local headers = extra or {}
  headers["content-type"] = {"application/json"}
  answer(applet, status, nil, headers, body)
end

local function check_and_pass(applet)
  local call = CALLS[applet.method]
  if call == nil then
    return refuse(applet, 405, [[%(method_body)s]], {allow = {"GET, HEAD, POST, PUT, DELETE"}})
  end
  local parts, size = {}, 0
  while true do
    local chunk = applet:receive(65536)
    if chunk == nil or #chunk == 0 then break end
    size = size + #chunk
    if size > %(max_body)d then return refuse(applet, 413, [[%(too_large)s]]) end
    parts[#parts + 1] = chunk
  end
  local body = table.concat(parts)
  local signed = applet.headers["content-md5"]
  signed = signed and signed[0] and string.lower(signed[0]) or ""
  if string.lower(applet.c:hex(applet.c:digest(body, "md5"))) ~= signed then
    return refuse(applet, 401, [[%(mismatch)s]])
  end
  local headers = {}
  for name, values in pairs(applet.headers) do
    if not HOP[name] then
      local list = {}
      for i = 0, #values do list[#list + 1] = values[i] end
      headers[name] = list
    end
  end
  headers["content-length"] = {tostring(#body)}
  local uri = applet.path
  if applet.qs ~= nil and applet.qs ~= "" then uri = uri .. "?" .. applet.qs end
  local client = core.httpclient()
  local res = client[call](client, {url = "http://eas-gateway" .. uri, dst = "unix@%(socket)s",
    headers = headers, body = body, timeout = %(timeout)d})
  if res == nil or res.status == nil or res.status == 0 then
    return refuse(applet, 503, [[%(unavailable)s]])
  end
  answer(applet, res.status, res.reason, res.headers or {}, res.body or "")
end

core.register_service("%(service)s", "http", function(applet)
  check_and_pass(applet)
  -- the body's strings go back at once (measured after 32 MB requests: 116 MiB held instead of 180-335)
  collectgarbage()
end)
"""


def lua(folder: Path, max_body: int, too_large: str, unavailable: str) -> str:
    """The Lua service, for ``folder`` (the gateway's) and its body limit and error bodies."""
    return _LUA % {
        "service": SERVICE, "max_body": max_body, "socket": folder / SOCKET, "timeout": SERVER_TIMEOUT_MS,
        "too_large": too_large, "mismatch": MISMATCH_BODY, "method_body": METHOD_BODY, "unavailable": unavailable,
    }


def map_text(state: GatewayState) -> str:
    """``MAP``: the routes to backends whose instances do not check a body against its Content-MD5."""
    checked = sorted(name for name, (backend, _) in state.routes.items()
                     if (b := state.backends.get(backend)) is not None and b.gateway_checks_body)
    return "".join(f"{route_key(name)} 1\n" for name in checked)


def frontend_rule(folder: Path) -> str:
    """Where the public frontend hands a signed request it could not hash to the Lua service (after the
    signature over the Content-MD5 header was verified)."""
    return (f"    http-request use-service lua.{SERVICE} if signature_ok !body_whole "
            f"{{ var(txn.eas_route),map_str({folder}/{MAP}) -m found }}")


def listener(folder: Path, routing: list[str], use_backend: str) -> list[str]:
    """The internal frontend a checked request comes back through: routed like any, with no second
    authentication (the unix socket sits in the 0700 gateway folder)."""
    return ["frontend checked_bodies", f"    bind unix@{folder}/{SOCKET} mode 600", *routing, use_backend,
            "    default_backend be_notfound", ""]
