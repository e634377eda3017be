-- A token bucket every node shares, as GCRA: KEYS[1] holds the bucket's
-- theoretical arrival time (TAT), in microseconds on Redis's clock (the
-- nodes' clocks may differ); the bucket holds burst - (TAT - now) /
-- interval tokens, and is full once TAT is past (the key then expired).
-- ARGV: n (tokens to take; negative: given back), interval (µs per
-- token), burst (tokens).
-- Returns 0 when taken (or given back), else the µs until it could be.
-- Up to the burst, a take is all or none; a larger one needs a full
-- bucket and leaves it in debt (TAT further than the burst).
if redis.replicate_commands then
  -- Before Redis 5, TIME followed by a write needs effects replication.
  redis.replicate_commands()
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local n, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- A key that is not a number (written by something else) is a full bucket.
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then
  tat = now
end
if n >= 0 then
  local wait = tat - now - (burst - math.min(n, burst)) * interval
  if wait > 0 then
    -- An integer reply; a wait beyond 2^53 µs (285 years) is that.
    return math.min(math.ceil(wait), 9007199254740992)
  end
  tat = tat + n * interval
else
  tat = math.max(now, tat + n * interval)
end
-- Gone when full again: an idle sender costs nothing (at most ~31 years,
-- what PX takes comfortably).
local ttl = math.min(math.ceil((tat - now) / 1000), 1000000000000)
if ttl > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return 0
