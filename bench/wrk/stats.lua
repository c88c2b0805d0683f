-- GET /agents/tasks/stats (the URL's path), with the bearer key.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.auth()
