-- What the calls scripts share (see calls.rs for the keys). A call's hash
-- holds `call` (its JSON, as the hub serializes it), `v` (its version),
-- `idx` (JSON {live, busy, devices}: the users it is live for, those it
-- keeps busy, its participants' devices: what indexes it) and `timer`
-- (the node whose ring timer runs for it, while an invitee's devices
-- ring).

local function index(prefix, id, idx, op)
  for _, user in ipairs(idx.live) do redis.call(op, prefix .. 'u#' .. user, id) end
  for _, user in ipairs(idx.busy) do redis.call(op, prefix .. 'b#' .. user, id) end
  for _, device in ipairs(idx.devices) do redis.call(op, prefix .. 'd#' .. device, id) end
end

-- Devices that joined on `node` are listed in its index (dropped with it).
local function place(prefix, device, node)
  if redis.call('HSETNX', prefix .. 'dn', device, node) == 1 then
    redis.call('SADD', prefix .. 'n#' .. node, device)
  end
end

-- A device in no call any more leaves its node's index.
local function displace(prefix, device)
  if redis.call('EXISTS', prefix .. 'd#' .. device) == 0 then
    local node = redis.call('HGET', prefix .. 'dn', device)
    if node then
      redis.call('SREM', prefix .. 'n#' .. node, device)
      redis.call('HDEL', prefix .. 'dn', device)
    end
  end
end
