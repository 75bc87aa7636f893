-- Addresses no provider may be asked to mail again: hard bounces and complaints reported by the
-- provider (SES events), or added by hand. The email consumer refuses them (suppressed /
-- address_suppressed) before any provider call; `herald suppressions remove` lifts one.
-- One list for the installation: Herald has no tenants yet (a tenant column joins the key then).
CREATE TABLE herald_suppressions (
    channel     text        NOT NULL,            -- email (sms numbers may join: STOP replies)
    address     text        NOT NULL,            -- lower-cased
    reason      text        NOT NULL,            -- bounce_permanent, complaint, manual
    source      text        NOT NULL,            -- ses, twilio, cli
    detail      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address)
);

-- Soft bounces are counted, never suppressed: a full mailbox empties, greylisting passes.
CREATE TABLE herald_soft_bounces (
    channel     text        NOT NULL,
    address     text        NOT NULL,
    count       integer     NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (channel, address)
);
