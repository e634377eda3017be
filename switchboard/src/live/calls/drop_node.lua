-- ARGV: prefix, the stopped node, this node.
-- Returns {devices that were on the stopped node, ids of the calls whose
-- ring timer ran there}; those timers are this node's now. One caller
-- gets them.
local prefix, dead, here = ARGV[1], ARGV[2], ARGV[3]
local devices = redis.call('SMEMBERS', prefix .. 'n#' .. dead)
redis.call('DEL', prefix .. 'n#' .. dead)
for _, device in ipairs(devices) do redis.call('HDEL', prefix .. 'dn', device) end
local ringing = redis.call('SMEMBERS', prefix .. 't#' .. dead)
redis.call('DEL', prefix .. 't#' .. dead)
local adopted = {}
for _, id in ipairs(ringing) do
  local key = prefix .. 'c#' .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'timer', here)
    redis.call('SADD', prefix .. 't#' .. here, id)
    adopted[#adopted + 1] = id
  end
end
return {devices, adopted}
