-- wrk: POST a body; count every status and the 503s whose body is not the gateway's JSON answer
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.body = args[1]
  wrk.headers["Authorization"] = args[2]
  statuses = {}
  unclean = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and not string.find(body, '"code":"Unavailable"', 1, true) then
    unclean = unclean + 1
  end
end

function done(summary, latency, requests)
  local counts, unclean_total = {}, 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    unclean_total = unclean_total + t:get("unclean")
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format('WRKSTATUS {"statuses": {%s}, "unclean_503": %d, "socket_errors": %d}\n',
    table.concat(parts, ", "), unclean_total, e.connect + e.read + e.write + e.timeout))
end
