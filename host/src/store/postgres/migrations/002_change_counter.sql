-- The count of management changes announced by the servers sharing this database
-- (host/src/store/postgres/changes.rs): each server advances it, and sends
-- NOTIFY agent_vault_changes, after a write that other servers' caches must see; each
-- server's watcher reads it as the fallback for a notification it missed.
CREATE SEQUENCE change_counter;
