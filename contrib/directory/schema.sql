-- pbx_python cluster directory in PostgreSQL (source = postgresql in pbx_python.conf [directory]).
--
-- Apply (idempotent: safe to run again after an upgrade, keeps the rows):
--     psql "host=db.example port=5432 dbname=pbx user=pbx_admin" -v ON_ERROR_STOP=1 -f contrib/directory/schema.sql
--
-- One row per extension or Asterisk pattern, the same meaning as a line of cluster_directory.conf:
--     extension      exact extension ("4711") or Asterisk pattern ("_5XXX"); exact beats pattern,
--                    patterns compete as in the dialplan
--     primary_sop    SOP hosting the extension (a name listed in [callservice] sops)
--     secondary_sop  fallback SOP, or '' for none
--     attributes     JSON object of extra attributes read by GETEXTENSIONINFO(ext,<name>):
--                    names [A-Za-z0-9_]+, values strings, e.g. {"vm_context": "default", "name": "Marie Dupont"}
--     updated_at     set by the trigger on every insert/update (for the admin; nodes ignore it)
--
-- Every statement that changes the table (INSERT, UPDATE, DELETE, TRUNCATE) sends
-- NOTIFY cluster_directory; each node LISTENs on that channel and reloads the whole table (it
-- also reloads every `refresh` seconds). A row the nodes refuse (bad SOP name, bad attribute)
-- makes them keep their previous directory and log the reason: check the Asterisk log after a change.
--
-- Move mailbox 4711 to sopC (primary) with sopA as fallback; every node follows within about a second:
--     UPDATE cluster_directory SET primary_sop = 'sopC', secondary_sop = 'sopA' WHERE extension = '4711';

CREATE TABLE IF NOT EXISTS cluster_directory (
    extension     text        PRIMARY KEY CHECK (extension <> ''),
    primary_sop   text        NOT NULL CHECK (primary_sop <> ''),
    secondary_sop text        NOT NULL DEFAULT '',
    attributes    jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE cluster_directory IS
    'pbx_python cluster directory: which SOPs host an extension (contrib/directory/schema.sql)';

-- updated_at follows every change of a row.
CREATE OR REPLACE FUNCTION cluster_directory_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- One notification per statement (a transaction's identical notifications are merged by
-- PostgreSQL and delivered at COMMIT); the payload is the operation, for logs only.
CREATE OR REPLACE FUNCTION cluster_directory_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cluster_directory', TG_OP);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS cluster_directory_touch ON cluster_directory;
CREATE TRIGGER cluster_directory_touch
    BEFORE INSERT OR UPDATE ON cluster_directory
    FOR EACH ROW EXECUTE FUNCTION cluster_directory_touch();

DROP TRIGGER IF EXISTS cluster_directory_notify ON cluster_directory;
CREATE TRIGGER cluster_directory_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cluster_directory
    FOR EACH STATEMENT EXECUTE FUNCTION cluster_directory_notify();
