-- wrk script for the read benchmark: one query kind per run, chosen by the first script
-- argument (`wrk ... -s query.lua URL -- pk_lookup`).
--
--   pk_lookup     POST query, id eq <random 1..ROWS>
--   indexed_page  POST query, category eq <random of 8>, page_size 100, page <random 1..50>
--   group_by      POST query, group_by country, count + sum(amount), all rows
--   plain_page    POST query, no predicates, page_size 100, page <random 1..1000>
--   deep_page     POST query, no predicates, page_size 100, page 1000
--   filter_order  POST query, category eq <random of 8>, order_by amount desc, page_size 50
--   topk_order    POST query, order_by amount desc, page_size 50 (top 50 of all rows)
--   key_desc      POST query, order_by id desc, page_size 50
--   health        GET /health
--
-- Every wrk thread seeds its own generator with a fixed seed (1000 + thread number), so both
-- servers get the same request sequence per thread. The random kinds' requests are made in
-- init(), POOL per thread, and sent in turn: wrk runs on the same two cores as the server,
-- and formatting a request in Lua per request (about 1.5 us of wrk's CPU) would tax the
-- random kinds and not /health. 65,536 lookups per thread are 131,072 distinct keys a run. done() prints one machine-readable line:
--   BENCH_JSON {...}
-- with requests/s, latency percentiles (ms) and error counts. wrk counts a response as a
-- status error when its status is >= 400 (there are no 1xx/3xx answers on these routes);
-- connect/read/write/timeout are socket errors.

local DATASET_PATH = "/api/v1/datasets/orders/query"
local ROWS = 1000000
local CATEGORIES = {
  "books", "clothing", "electronics", "garden",
  "grocery", "home", "sports", "toys",
}
local HEADERS = { ["Content-Type"] = "application/json" }

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
end

local kind
local POOL = 65536
local pool = {}
local next_request = 0

-- One request of a random kind, from the thread's generator.
local function random_request()
  local body
  if kind == "pk_lookup" then
    body = string.format('{"predicates":[{"col":"id","op":"eq","val":%d}]}',
      math.random(1, ROWS))
  elseif kind == "filter_order" then
    body = string.format(
      '{"predicates":[{"col":"category","op":"eq","val":"%s"}],' ..
      '"order_by":[{"col":"amount","dir":"desc"}],"page_size":50}',
      CATEGORIES[math.random(1, #CATEGORIES)])
  elseif kind == "indexed_page" then
    body = string.format(
      '{"predicates":[{"col":"category","op":"eq","val":"%s"}],"page":%d,"page_size":100}',
      CATEGORIES[math.random(1, #CATEGORIES)], math.random(1, 50))
  else -- plain_page
    body = string.format('{"page":%d,"page_size":100}', math.random(1, 1000))
  end
  return wrk.format("POST", DATASET_PATH, HEADERS, body)
end

local fixed -- pre-formatted request for the kinds without randomness

function init(args)
  kind = args[1] or "pk_lookup"
  math.randomseed(1000 + (thread_no or 0))
  if kind == "group_by" then
    fixed = wrk.format("POST", DATASET_PATH, HEADERS,
      '{"group_by":["country"],"aggregations":[{"op":"count","alias":"n"},{"op":"sum","col":"amount"}]}')
  elseif kind == "health" then
    fixed = wrk.format("GET", "/health")
  elseif kind == "deep_page" then
    fixed = wrk.format("POST", DATASET_PATH, HEADERS, '{"page":1000,"page_size":100}')
  elseif kind == "topk_order" then
    fixed = wrk.format("POST", DATASET_PATH, HEADERS,
      '{"order_by":[{"col":"amount","dir":"desc"}],"page_size":50}')
  elseif kind == "key_desc" then
    fixed = wrk.format("POST", DATASET_PATH, HEADERS,
      '{"order_by":[{"col":"id","dir":"desc"}],"page_size":50}')
  elseif kind ~= "pk_lookup" and kind ~= "indexed_page" and kind ~= "plain_page"
      and kind ~= "filter_order" then
    error("unknown query kind: " .. tostring(kind))
  end
  if not fixed then
    for i = 1, POOL do
      pool[i] = random_request()
    end
  end
end

function request()
  if fixed then
    return fixed
  end
  next_request = next_request % POOL + 1
  return pool[next_request]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.3f,"rps":%.2f,"bytes":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,' ..
    '"non2xx":%d,"connect_err":%d,"read_err":%d,"write_err":%d,"timeout_err":%d}\n',
    summary.requests, secs, summary.requests / secs, summary.bytes,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end
