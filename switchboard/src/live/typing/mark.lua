-- KEYS: the node's typing index (a hash: `<conversation>#<user>` =
-- version of the start it shows).
-- ARGV: field, version, 1 (shown) or 0 (stopped).
-- A start is marked unless a later change of it was; a stop unmarks it
-- unless a later start marked it again.
local key, field, version = KEYS[1], ARGV[1], tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', key, field) or '')
if ARGV[3] == '1' then
  if current == nil or current < version then
    redis.call('HSET', key, field, ARGV[2])
  end
elseif current ~= nil and current < version then
  redis.call('HDEL', key, field)
end
return 1
