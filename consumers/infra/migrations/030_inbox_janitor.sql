-- The inbox janitor finds its victims through small partial indexes instead of scanning the
-- table: read rows by read time, and rows that have an expiry by expiry.
CREATE INDEX herald_inbox_read_at ON herald_inbox (read_at) WHERE read_at IS NOT NULL;
CREATE INDEX herald_inbox_expires_at ON herald_inbox (expires_at) WHERE expires_at IS NOT NULL;
