"""The Kafka runtime every Herald process runs on: poll, decode, handle, produce, ack, commit.

Nothing here knows about notifications; processes plug a :class:`~consumers.runtime.handling.Handler` in.
"""
