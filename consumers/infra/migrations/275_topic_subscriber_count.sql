-- GET /v1/topics/{key} counted a topic's subscribers with count(*) on every call (and so did every
-- page of GET /v1/topics/{key}/subscribers, to learn whether the topic exists): a scan of the
-- topic's index entries, a million for a million subscribers, that any caller could repeat.
-- The count is now kept on the topic row, exact, by statement triggers on the subscribers table,
-- so every writer keeps it (the admin API, erasure, a topic's cascade, COPY or plain SQL): one
-- UPDATE per statement and topic, with the statement's rows counted from its transition table.
--
-- Locks: a statement locks the topic rows it changes, after the subscriber rows, in (tenant, key)
-- order, so two statements over several topics (two erasures) cannot deadlock on them; writers to
-- one topic take turns for the rest of their transaction, reads never wait.
CREATE FUNCTION herald_topic_subscribers_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM 1 FROM herald_topics t
        WHERE (t.tenant, t.key) IN (SELECT c.tenant, c.topic FROM changed c)
        ORDER BY t.tenant, t.key FOR NO KEY UPDATE OF t;
    UPDATE herald_topics t SET subscriber_count = t.subscriber_count + sign * c.n
        FROM (SELECT tenant, topic, count(*) AS n FROM changed GROUP BY tenant, topic) c
        WHERE t.tenant = c.tenant AND t.key = c.topic;
    RETURN NULL;
END;
$$;

CREATE FUNCTION herald_topic_subscribers_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE herald_topics SET subscriber_count = 0 WHERE subscriber_count <> 0;
    RETURN NULL;
END;
$$;

-- A catalogue change (a constant default, no rewrite). From here to the commit writes to both
-- tables wait, and reads of herald_topics too; the fan-out reads only herald_topic_subscribers.
ALTER TABLE herald_topics ADD COLUMN subscriber_count bigint NOT NULL DEFAULT 0;
CREATE TRIGGER herald_topic_subscribers_added AFTER INSERT ON herald_topic_subscribers
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION herald_topic_subscribers_count();
CREATE TRIGGER herald_topic_subscribers_removed AFTER DELETE ON herald_topic_subscribers
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION herald_topic_subscribers_count();
CREATE TRIGGER herald_topic_subscribers_truncated AFTER TRUNCATE ON herald_topic_subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION herald_topic_subscribers_truncated();
-- The existing subscriptions, counted once (the triggers above hold off every writer meanwhile).
UPDATE herald_topics t SET subscriber_count = c.n
    FROM (SELECT tenant, topic, count(*) AS n FROM herald_topic_subscribers GROUP BY tenant, topic) c
    WHERE t.tenant = c.tenant AND t.key = c.topic;
