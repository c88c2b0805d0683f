-- POST /agents/tasks with the seed's create body (the same body to the service and to bare.py).
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.auth()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"task":"Analyze Q4 revenue trends and create executive report","agentId":"amy",]]
  .. [["context":{"dataSource":"revenue_q4_2024.csv","focusAreas":["growth","churn","expansion"],]]
  .. [["targetAudience":"C-suite executives"},"priority":"high","deadline":"2024-10-30T17:00:00Z",]]
  .. [["deliverables":["pdf-report","presentation","data-analysis"]}]]
