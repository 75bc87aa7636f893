-- A console session names the admin key that opened it, so revoking the key ends its sessions:
-- consumers/console/auth.py SessionStore.get reads a session only while its key is not revoked.
-- Sessions opened before this migration get their key id from the operator text
-- ("key:<key id> (<name>)"); link sessions ("link:<label>") keep NULL.
ALTER TABLE herald_console_sessions ADD COLUMN key_id text;
UPDATE herald_console_sessions SET key_id = substring(operator FROM '^key:([0-9a-f]+) ')
    WHERE operator LIKE 'key:%';
