-- ARGV: prefix, call id, expected version, next call JSON, next version,
-- 1 if it ended, node, next index JSON, 1 if it still rings.
-- Returns 1 if written, 0 if the version moved on (or the call is gone).
local prefix, id, node = ARGV[1], ARGV[2], ARGV[7]
local key = prefix .. 'c#' .. id
local stored = redis.call('HMGET', key, 'v', 'idx', 'timer')
if not stored[1] or tonumber(stored[1]) ~= tonumber(ARGV[3]) then
  return 0
end
local old = cjson.decode(stored[2])
index(prefix, id, old, 'SREM')
local timer = stored[3]
if ARGV[6] == '1' then
  redis.call('DEL', key)
  if timer then redis.call('SREM', prefix .. 't#' .. timer, id) end
  for _, device in ipairs(old.devices) do displace(prefix, device) end
  return 1
end
local new = cjson.decode(ARGV[8])
redis.call('HSET', key, 'call', ARGV[4], 'v', ARGV[5], 'idx', ARGV[8])
index(prefix, id, new, 'SADD')
-- A device that was not in the call joined here (an answer is handled on
-- the answering device's node).
for _, device in ipairs(new.devices) do place(prefix, device, node) end
for _, device in ipairs(old.devices) do displace(prefix, device) end
if ARGV[9] ~= '1' and timer then
  redis.call('SREM', prefix .. 't#' .. timer, id)
  redis.call('HDEL', key, 'timer')
end
return 1
