-- KEYS: the node's device index, the version counter.
-- ARGV: node, version floor, users per call at most, user hash prefix.
-- Takes up to that many users off the node's index and drops the node's
-- devices, connected or lingering, from each; returns {users left in the
-- index, {{user, presence}, …}} for the users whose presence changed.
local node_index, vkey = KEYS[1], KEYS[2]
local node, floor = ARGV[1], ARGV[2]
local users = redis.call('SPOP', node_index, tonumber(ARGV[3]))
local out = {}
for _, user in ipairs(users) do
  local key = ARGV[4] .. user
  local e = load(key)
  if e.exists then
    local status, count = shown(e)
    local touched = false
    for s, n in pairs(e.connected) do
      if n == node then
        e.connected[s] = nil
        redis.call('HDEL', key, 'd#' .. s)
        touched = true
      end
    end
    for s, l in pairs(e.lingering) do
      if l.node == node then
        e.lingering[s] = nil
        redis.call('HDEL', key, 'l#' .. s)
        touched = true
      end
    end
    if touched then
      out[#out + 1] = {user, changed(key, e, status, count, vkey, floor)}
    end
  end
end
return {redis.call('SCARD', node_index), out}
