-- One wrk script for every scenario of bench/run.sh, chosen by environment variables:
--   BENCH_KIND  healthz | create_chat | create_message_spread | create_message_hot | get_message | list_messages
--               | search_messages (100 hits a page: the seeded messages all match)
--   TOKEN       the application's token
--   CHATS       chats 1..CHATS exist (spread creates pick one at random)
--   HOT_CHAT    the chat that hot creates, reads and lists use
--   MESSAGES    messages 1..MESSAGES exist in HOT_CHAT (reads pick one at random)
--   PACE_MS     when set, each connection waits this long between requests (paced runs)
local kind = os.getenv("BENCH_KIND") or "healthz"
local token = os.getenv("TOKEN") or ""
local chats = tonumber(os.getenv("CHATS") or "1")
local hot = os.getenv("HOT_CHAT") or "1"
local messages = tonumber(os.getenv("MESSAGES") or "1")
local pace = tonumber(os.getenv("PACE_MS") or "")
local json = { ["Content-Type"] = "application/json" }
local app = "/applications/" .. token
local counter = 0

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

function request()
  counter = counter + 1
  if kind == "healthz" then
    return wrk.format("GET", "/healthz")
  elseif kind == "create_chat" then
    return wrk.format("POST", app .. "/chats", json, "{}")
  elseif kind == "create_message_spread" then
    local body = '{"body":"benchmark message ' .. counter .. ' with some ordinary words in it"}'
    return wrk.format("POST", app .. "/chats/" .. math.random(1, chats) .. "/messages", json, body)
  elseif kind == "create_message_hot" then
    local body = '{"body":"benchmark message ' .. counter .. ' with some ordinary words in it"}'
    return wrk.format("POST", app .. "/chats/" .. hot .. "/messages", json, body)
  elseif kind == "get_message" then
    return wrk.format("GET", app .. "/chats/" .. hot .. "/messages/" .. math.random(1, messages))
  elseif kind == "list_messages" then
    return wrk.format("GET", app .. "/chats/" .. hot .. "/messages?limit=50")
  elseif kind == "search_messages" then
    return wrk.format("GET", app .. "/chats/" .. hot .. "/messages/search?q=seed&limit=100")
  end
  error("unknown BENCH_KIND " .. kind)
end

if pace then
  function delay()
    return pace
  end
end
