-- KEYS: the version counter, then each user's hash.
-- ARGV: version floor.
-- Returns a presence per user, in order; an offline one carries the
-- counter's version (no older than any change made before), kept at
-- least at the floor.
local vkey, floor = KEYS[1], ARGV[1]
local out = {}
local current = nil
for i = 2, #KEYS do
  local e = load(KEYS[i])
  if e.exists then
    local status, n = shown(e)
    out[i - 1] = {status, n, e.seen or -1, e.version, 0}
  else
    if current == nil then
      current = tonumber(redis.call('GET', vkey) or '0') or 0
      if current < tonumber(floor) then
        redis.call('SET', vkey, floor)
        current = tonumber(floor)
      end
    end
    out[i - 1] = {'offline', 0, -1, current, 0}
  end
end
return out
