-- Shared by the scripts in this folder (loaded with dofile from BENCH_WRK_DIR).
-- Every request carries the bearer key from BENCH_KEY; each wrk thread gets its own random seed.
local M = {}

function M.auth()
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
end

local counter = 0
function M.setup(thread)
  counter = counter + 1
  thread:set("number", counter)
end

function M.seed()
  math.randomseed(os.time() * 1000 + (number or 0) * 7919)
end

return M
