-- KEYS: the user's hash, the version counter.
-- ARGV: the chosen status, version floor.
-- Returns the presence after, or nil when the user has no device.
local key, vkey = KEYS[1], KEYS[2]
local e = load(key)
if not e.exists then
  return false
end
local status, count = shown(e)
e.status = ARGV[1]
redis.call('HSET', key, 'status', e.status)
return changed(key, e, status, count, vkey, ARGV[2])
