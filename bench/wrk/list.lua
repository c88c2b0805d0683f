-- GET /agents/tasks?status=…&priority=… : two filters, a random pair of the seeded values each time.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.auth()
setup = common.setup

local statuses = {"pending", "assigned"}
local priorities = {"low", "medium", "high", "urgent"}

init = function(args)
  common.seed()
end

request = function()
  local path = "/agents/tasks?status=" .. statuses[math.random(#statuses)]
    .. "&priority=" .. priorities[math.random(#priorities)]
  return wrk.format("GET", path)
end
