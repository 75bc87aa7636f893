-- Existing critical checks (migration 262) take their notification's inbox row's tenant (a
-- critical notification goes to every channel, in-app included; both lookups use an index on
-- notification_id) or its workflow row's. Any other (its inbox row archived: the archive has no
-- such index and is not read whole here) stays NULL, tenant unknown. One row per critical
-- notification, locked row by row (ROW EXCLUSIVE on the table: reads and other rows' writes go
-- on); a receipt for a row being filled waits for this file's transaction.
UPDATE herald_critical_watch w SET tenant = i.tenant FROM herald_inbox i
    WHERE i.notification_id = w.notification_id AND w.tenant IS NULL;
UPDATE herald_critical_watch w SET tenant = f.tenant FROM herald_workflows f
    WHERE f.notification_id = w.notification_id AND w.tenant IS NULL;
