"""The admin API: what services (not end users) call, with service API keys.

Recipients ("identify" and erasure), emitting events over HTTP; keys are created and revoked
with ``herald keys``. User tokens never reach these routes and keys never reach the users'.
"""
