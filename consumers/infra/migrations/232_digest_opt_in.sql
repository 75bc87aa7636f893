-- The recipient's email digest switch (the preference centre's "email me a digest of unread
-- notifications"). On by default, so a recipient who never chose keeps getting digests; a user
-- with no herald_recipients row at all reads as on too. The consent check
-- (consumers/classifier/consent.py, may_send(..., digest=...)) reads it for every digest.
ALTER TABLE herald_recipients ADD COLUMN digest boolean NOT NULL DEFAULT true;
