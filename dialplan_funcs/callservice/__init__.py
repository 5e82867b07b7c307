"""CallService / INITSERVICE: intra-cluster call routing with parameters, in pure Python.

Modules: ``codec`` (X-CallService header codec and HMAC), ``routing`` (plan, Dial result
classification, final status), ``options`` (CallService options argument), ``settings``
([callservice] section of pbx_python.conf). None of them imports Asterisk or cffi.
``service`` is the Asterisk glue: the CallService application, the INITSERVICE() function and
the 'callservice show sops' CLI command. List this package in pbx_python.conf's modules.
"""
from . import service  # noqa: F401  (declares CallService, INITSERVICE, the CLI command)
