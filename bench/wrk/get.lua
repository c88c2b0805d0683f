-- GET /agents/tasks/<id> for a random id from the file BENCH_IDS (one seeded task id a line).
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.auth()
setup = common.setup

local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do
  ids[#ids + 1] = line
end

init = function(args)
  common.seed()
end

request = function()
  return wrk.format("GET", "/agents/tasks/" .. ids[math.random(#ids)])
end
