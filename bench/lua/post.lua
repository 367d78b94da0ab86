-- POST a small task as one of several users, round robin. USERS is "token|path;token|path".
local users = {}
for token, path in string.gmatch(os.getenv("USERS"), "([^|;]+)|([^;]+)") do
  users[#users + 1] = { token = token, path = path }
end
local body = '{"title":"benchmark task","priority":"high","tags":["bench"]}'
local n = 0

function request()
  n = n + 1
  local user = users[(n % #users) + 1]
  return wrk.format("POST", user.path, {
    ["Authorization"] = "Bearer " .. user.token,
    ["Content-Type"] = "application/json",
  }, body)
end
