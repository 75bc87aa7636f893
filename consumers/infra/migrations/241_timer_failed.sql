-- A timer whose fire handler fails on its own data (a record error or a bug, never an outage) is
-- set aside as 'failed' with the error, instead of aborting every other due timer's release at
-- every poll. An operator can read last_error, fix the cause and set the row back to 'pending'.
ALTER TABLE herald_timers DROP CONSTRAINT herald_timers_state_check;
ALTER TABLE herald_timers ADD CONSTRAINT herald_timers_state_check
    CHECK (state IN ('pending', 'fired', 'cancelled', 'failed'));
ALTER TABLE herald_timers ADD COLUMN last_error text;
