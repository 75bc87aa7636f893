-- Topics (broadcast groups), their subscribers, and the fan-out's progress per event.

CREATE TABLE herald_topics (
    tenant      text NOT NULL DEFAULT '',
    key         text NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);

-- The primary key is also the fan-out's keyset order: subscribers by user id within a topic.
CREATE TABLE herald_topic_subscribers (
    tenant      text NOT NULL DEFAULT '',
    topic       text NOT NULL,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, topic, user_id),
    FOREIGN KEY (tenant, topic) REFERENCES herald_topics (tenant, key) ON DELETE CASCADE
);

-- One row per event addressed to a topic: the last subscriber whose copy the broker acknowledged.
-- A restarted fan-out resumes after it, so a crash neither skips nor re-sends a whole range.
CREATE TABLE herald_fanout_cursors (
    event_id     text PRIMARY KEY,
    tenant       text NOT NULL,
    topic        text NOT NULL,
    after_user   text NOT NULL DEFAULT '',
    fanned       bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
