-- KEYS: the user's hash, the version counter.
-- ARGV: until (ms), version floor, user, node index prefix.
-- The devices lingering until `until` or before are gone; returns the
-- presence after if watchers see a change, nil otherwise.
local key, vkey = KEYS[1], KEYS[2]
local till = tonumber(ARGV[1])
local e = load(key)
if not e.exists then
  return false
end
local status, count = shown(e)
local gone_from = {}
for s, l in pairs(e.lingering) do
  if l.till <= till then
    e.lingering[s] = nil
    gone_from[l.node] = true
    redis.call('HDEL', key, 'l#' .. s)
  end
end
unindex(e, ARGV[3], ARGV[4], gone_from)
local out = changed(key, e, status, count, vkey, ARGV[2])
if out[5] == 1 then
  return out
end
return false
