-- GET with a bearer token: TOKEN and, optionally, THINK_MS (pause between requests).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local think = tonumber(os.getenv("THINK_MS") or "0")

function delay()
  return think
end
