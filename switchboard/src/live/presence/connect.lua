-- KEYS: the user's hash, the index of the device's node, the version
-- counter.
-- ARGV: user, socket, node, remembered status, remembered last seen (''
-- if none), now (ms), version floor, node index prefix.
local key, node_index, vkey = KEYS[1], KEYS[2], KEYS[3]
local user, socket, node = ARGV[1], ARGV[2], ARGV[3]
local now, floor = tonumber(ARGV[6]), ARGV[7]
local e = load(key)
local status, count = shown(e)
if not e.exists then
  e.status = ARGV[4]
  redis.call('HSET', key, 'status', e.status)
  if ARGV[5] ~= '' then e.seen = tonumber(ARGV[5]) end
end
-- The new socket is a lingering device back (a reload): the oldest
-- departure makes way.
local oldest, oldest_till = nil, nil
for s, l in pairs(e.lingering) do
  if oldest == nil or l.till < oldest_till or (l.till == oldest_till and s < oldest) then
    oldest, oldest_till = s, l.till
  end
end
if oldest then
  local gone_from = {[e.lingering[oldest].node] = true}
  e.lingering[oldest] = nil
  redis.call('HDEL', key, 'l#' .. oldest)
  e.connected[socket] = node
  unindex(e, user, ARGV[8], gone_from)
end
e.connected[socket] = node
redis.call('HSET', key, 'd#' .. socket, node)
see(key, e, now)
redis.call('SADD', node_index, user)
return changed(key, e, status, count, vkey, floor)
