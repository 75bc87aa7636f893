"""The activity store: ``herald run ledger`` sinks outcomes, receipts and dead letters into
PostgreSQL (:mod:`.sink`, :mod:`.store`); :mod:`.queries` reads it for the console, ``herald why``
and ``herald dlq``."""
