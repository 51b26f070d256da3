-- wrk script of `lfpipe load gateway`: POST pre-built bodies in turn, optionally paced, and print a JSON summary.
-- Arguments (after --): folder with body-00001.bin ..., count, pause in ms before each request, content type,
-- Authorization header value.
local bodies = {}
local pause = 0
local counter = 0

function init(args)
  local folder, count = args[1], tonumber(args[2])
  for i = 1, count do
    local f = assert(io.open(string.format("%s/body-%05d.bin", folder, i), "rb"))
    bodies[i] = f:read("*all")
    f:close()
  end
  pause = tonumber(args[3]) or 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[4]
  wrk.headers["Authorization"] = args[5]
  counter = math.random(count)
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])
end

function delay()
  return pause
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
