-- ARGV: prefix, call id, call JSON, version, most calls a user is busy
-- in, node, index JSON {live, busy, devices}, 1 if it rings.
-- Returns 'ok', or the first busy user (in `busy` order).
local prefix, id, node = ARGV[1], ARGV[2], ARGV[6]
local max = tonumber(ARGV[5])
local idx = cjson.decode(ARGV[7])
for _, user in ipairs(idx.live) do
  if redis.call('SCARD', prefix .. 'b#' .. user) >= max then
    return {'busy', user}
  end
end
local key = prefix .. 'c#' .. id
redis.call('HSET', key, 'call', ARGV[3], 'v', ARGV[4], 'idx', ARGV[7])
index(prefix, id, idx, 'SADD')
for _, device in ipairs(idx.devices) do place(prefix, device, node) end
if ARGV[8] == '1' then
  redis.call('HSET', key, 'timer', node)
  redis.call('SADD', prefix .. 't#' .. node, id)
end
return {'ok'}
