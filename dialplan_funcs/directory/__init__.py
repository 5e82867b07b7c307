"""The cluster directory: which SOPs host an extension, for GETEXTENSIONINFO() and CallService.

Modules: ``table`` (entries, Asterisk pattern matching and precedence), ``settings`` ([directory]
of pbx_python.conf), ``sources`` (the file source; PostgreSQL in sources/postgres.py): all pure
Python. ``service`` is the Asterisk glue: the live table, GETEXTENSIONINFO() and
'callservice show directory'. List this package in pbx_python.conf's modules.
"""
from . import service  # noqa: F401  (declares GETEXTENSIONINFO and the CLI command)
