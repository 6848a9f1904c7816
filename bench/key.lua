-- GET /v1/jobs/{id} over every job (BENCH_JOBS of them, 100,000 unless set), in a scattered order.
local jobs = tonumber(os.getenv("BENCH_JOBS") or "100000")
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/v1/jobs/J%06d", (counter * 7919) % jobs + 1))
end
