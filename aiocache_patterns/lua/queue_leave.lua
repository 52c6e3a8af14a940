-- queue_leave: a waiter gives up its place in a lock or semaphore queue.
--
-- KEYS[1]  the wait queue (zset)
-- KEYS[2]  waiter deadlines (hash)
-- ARGV[1]  token of the waiter
--
-- Returns 1 if the waiter was queued, 0 if not.

redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
