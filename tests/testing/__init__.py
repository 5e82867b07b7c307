"""Tests of pbx_python.testing (the project's own Asterisk/SIPp test helpers)."""
