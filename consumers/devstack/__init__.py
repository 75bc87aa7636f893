"""The embedded dev stack: real servers from PyPI wheels, each on a free port, stopped on exit.

Used by ``make run`` (``herald dev``), ``make stack``, the tests and the benchmarks.
Not imported by the consumers in production.
"""

from consumers.devstack.stack import DevStack, Service

__all__ = ["DevStack", "Service"]
