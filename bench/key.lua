-- GET /v1/jobs/{id} over every job, in a scattered order.
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/v1/jobs/J%06d", (counter * 7919) % 10000 + 1))
end
