"""CallService / INITSERVICE: intra-cluster call routing with parameters, in pure Python.

Modules: ``codec`` (X-CallService-* header codec and HMAC), ``routing`` (plan, Dial result
classification, final status), ``options`` (CallService options argument), ``settings``
([callservice] section of pbx_python.conf). None of them imports Asterisk or cffi.
"""
