-- PATCH .../{id}/complete with a bearer token, round robin over IDS ("1,2,3") under PREFIX
-- (the user's tasks path).
wrk.method = "PATCH"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local prefix = os.getenv("PREFIX")
local ids = {}
for id in string.gmatch(os.getenv("IDS"), "([^,]+)") do
  ids[#ids + 1] = id
end
local n = 0

function request()
  n = n + 1
  return wrk.format(nil, prefix .. "/" .. ids[(n % #ids) + 1] .. "/complete")
end
