-- KEYS: a stopped node's typing index.
-- Returns its fields (`<conversation>#<user>`) and deletes it: one
-- caller gets them.
local fields = redis.call('HKEYS', KEYS[1])
redis.call('DEL', KEYS[1])
return fields
