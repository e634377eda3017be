-- What every presence script shares (see presence.rs for the keys and
-- the replies). A user's hash holds `status` (the chosen one), `seen`
-- (last seen, Unix ms), `v` (the version of the last visible change),
-- `d#<socket>` = node for each device connected, and `l#<socket>` =
-- `<until>#<node>` for each device lingering in its grace period. The
-- hash exists while the user has a device, connected or lingering.

-- A number as Redis keeps it: digits, never Lua's `1.7e+15`.
local function int(n)
  return string.format('%d', n)
end

local function load(key)
  local raw = redis.call('HGETALL', key)
  local e = {exists = #raw > 0, status = 'online', seen = nil, version = 0,
             connected = {}, lingering = {}}
  for i = 1, #raw, 2 do
    local field, value = raw[i], raw[i + 1]
    local kind = string.sub(field, 1, 2)
    if field == 'status' then
      e.status = value
    elseif field == 'seen' then
      e.seen = tonumber(value)
    elseif field == 'v' then
      e.version = tonumber(value) or 0
    elseif kind == 'd#' then
      e.connected[string.sub(field, 3)] = value
    elseif kind == 'l#' then
      local sep = string.find(value, '#', 1, true)
      local till = sep and tonumber(string.sub(value, 1, sep - 1))
      if till then
        e.lingering[string.sub(field, 3)] = {till = till, node = string.sub(value, sep + 1)}
      else
        -- Not ours to read: dropped rather than counted for ever.
        redis.call('HDEL', key, field)
      end
    end
  end
  return e
end

local function devices(e)
  local n = 0
  for _ in pairs(e.connected) do n = n + 1 end
  for _ in pairs(e.lingering) do n = n + 1 end
  return n
end

-- The status and device count watchers see.
local function shown(e)
  local n = devices(e)
  if n > 0 then return e.status, n end
  return 'offline', 0
end

-- The next version: one counter for every user, never below `floor` (the
-- time in thousandths of a millisecond, so that versions keep growing
-- after Redis lost its data).
local function next_version(vkey, floor)
  local v = redis.call('INCR', vkey)
  if v <= tonumber(floor) then
    redis.call('SET', vkey, floor)
    v = redis.call('INCR', vkey)
  end
  return v
end

local function see(key, e, now)
  if e.seen == nil or now > e.seen then
    e.seen = now
  end
  redis.call('HSET', key, 'seen', int(e.seen))
end

-- The user's presence after a change that found it as (`status`,
-- `count`): {status, devices, seen or -1, version, visible (0 or 1)}. A
-- visible change takes the next version; the hash goes once no device
-- is left.
local function changed(key, e, status, count, vkey, floor)
  local after, n = shown(e)
  local visible = 0
  if after ~= status or n ~= count then
    visible = 1
    e.version = next_version(vkey, floor)
    if n > 0 then
      redis.call('HSET', key, 'v', int(e.version))
    end
  end
  if n == 0 then
    redis.call('DEL', key)
  end
  return {after, n, e.seen or -1, e.version, visible}
end

-- Removes `user` from the device index of each node in `nodes` on which
-- it has no device left.
local function unindex(e, user, node_prefix, nodes)
  for node in pairs(nodes) do
    local left = false
    for _, n in pairs(e.connected) do
      if n == node then left = true end
    end
    for _, l in pairs(e.lingering) do
      if l.node == node then left = true end
    end
    if not left then
      redis.call('SREM', node_prefix .. node, user)
    end
  end
end
