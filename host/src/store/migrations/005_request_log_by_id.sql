-- The request log is pruned by age in id order (entries are written in the order requests
-- finished, so ids and times rise together); the index on created_at only cost every insert
-- and every delete a second B-tree to update.
DROP INDEX IF EXISTS request_logs_by_time;
