-- KEYS: the user's hash, the version counter.
-- ARGV: socket, now (ms), grace (ms), most devices lingering, version
-- floor, user, node index prefix.
-- Returns {'unknown'}, {'lingering', until} or {'gone', presence}.
local key, vkey = KEYS[1], KEYS[2]
local socket, now, grace, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local e = load(key)
local node = e.connected[socket]
if node == nil then
  return {'unknown'}
end
local status, count = shown(e)
e.connected[socket] = nil
redis.call('HDEL', key, 'd#' .. socket)
see(key, e, now)
local lingering = 0
for _ in pairs(e.lingering) do lingering = lingering + 1 end
if grace > 0 and lingering < max then
  local till = now + grace
  redis.call('HSET', key, 'l#' .. socket, int(till) .. '#' .. node)
  return {'lingering', till}
end
unindex(e, ARGV[6], ARGV[7], {[node] = true})
return {'gone', changed(key, e, status, count, vkey, ARGV[5])}
