-- Servers sharing this database tell each other about changes
-- (host/src/store/postgres/changes.rs). Every statement that changes what a server may hold
-- in a cache advances `change_counter` and sends NOTIFY agent_vault_changes, from a trigger:
-- inside the writing transaction, so no committed change goes unannounced (a server that
-- dies between its commit and an announcement of its own would leave the others stale), and
-- whoever writes (a server, `agent-vault` commands, `migrate-db`, an operator's psql).
-- PostgreSQL delivers a NOTIFY only when its transaction commits, and folds the repeats of
-- one transaction into one. `nextval` is not undone by a rollback: a write that fails may
-- cost the other servers one needless cache drop, never a missed one.
CREATE SEQUENCE change_counter;

CREATE FUNCTION agent_vault_announce_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('change_counter');
    PERFORM pg_notify('agent_vault_changes', '');
    RETURN NULL;
END
$$;

-- Every table but the request log and its journal, written on every proxied request and
-- held in no cache. The proxy also touches `last_used_at` of a token or device token on
-- every use: an update of that column alone announces nothing.
DO $$
DECLARE
    name TEXT;
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'master_key', 'vaults', 'vault_settings', 'instance_settings', 'credentials',
        'services', 'users', 'agents', 'vault_grants', 'user_invites', 'user_invite_vaults',
        'agent_invites', 'agent_invite_vaults', 'proposals', 'mitm_ca'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER announce_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I
             FOR EACH STATEMENT EXECUTE FUNCTION agent_vault_announce_change()',
            name
        );
    END LOOP;
END
$$;

CREATE TRIGGER announce_change AFTER INSERT OR DELETE OR TRUNCATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION agent_vault_announce_change();
CREATE TRIGGER announce_change_of_columns
    AFTER UPDATE OF hash, public_id, kind, user_id, agent_id, vault_id, vault_role, label,
        idle_seconds, created_by_type, created_by_id, created_at, expires_at ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION agent_vault_announce_change();

CREATE TRIGGER announce_change AFTER INSERT OR DELETE OR TRUNCATE ON device_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION agent_vault_announce_change();
CREATE TRIGGER announce_change_of_columns
    AFTER UPDATE OF hash, public_id, user_id, idle_seconds, created_at ON device_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION agent_vault_announce_change();
