"""``pbx-python new <module>``: a dialplan module skeleton and its test against a real Asterisk.

Writes, in the target directory (default: the current one):

- ``<module>.py``: one application, ``<Module>Hello``, and one function, ``<MODULE>_UPPER``;
- ``tests/test_<module>.py``: pytest tests that start a private Asterisk with pbx_python.so and
  this module loaded (the ``asterisk_factory`` and ``pbx_python_module`` fixtures of pbx_python's
  pytest plugin) and check what the dialplan sees.

Nothing is overwritten: if either file exists, nothing is written and the command fails.
"""
from __future__ import annotations

import keyword
from pathlib import Path

MODULE_TEMPLATE = '''\
"""{module}: dialplan applications and functions written in Python, run by pbx_python.

List it in pbx_python.conf ([general] path = <this directory>, modules = {module}), then
'module reload pbx_python.so'. 'python show applications' and 'python show functions' list what
it declares.
"""
import logging

import pbx_python as px

log = logging.getLogger(__name__)


@px.application("{app}", synopsis="Set {var} to a greeting",
                syntax="{app}([name])", arguments="name: who to greet (default: world)")
def hello(chan, name="world"):
    """Set the channel variable {var} to "Hello <name>"."""
    chan.set_var("{var}", f"Hello {{name}}")
    log.info("greeted %s on %s", name, chan.name)


@px.function("{func}", synopsis="Upper-case the argument", syntax="{func}(text)")
def upper(chan, text=""):
    return text.upper()
'''

TEST_TEMPLATE = '''\
"""{module}.py inside a real Asterisk, started by pbx_python's pytest plugin.

Run with: python -m pytest tests   (the Python that has pbx_python installed; the plugin finds
Asterisk through --asterisk-prefix, $ASTERISK_PREFIX or the asterisk on PATH, and pbx_python.so
through $PBX_PYTHON_MODULE or that Asterisk's modules directory: 'pbx-python install').
"""
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MODULE_DIR = Path(__file__).resolve().parents[1]

DIALPLAN = """\\
[default]
exten => hello,1,{app}(Ada)
 same => n,Verbose(0,RESULT ${{{var}}})
 same => n,Hangup()
"""


@pytest.fixture
def asterisk(asterisk_factory, pbx_python_module):
    """A private Asterisk with pbx_python.so loaded, embedding this Python, importing {module}."""
    pbx_python_conf = textwrap.dedent(f"""\\
        [general]
        python = {{sys.executable}}
        path = {{MODULE_DIR}}
        modules = {module}
        """)
    return asterisk_factory(modules=[pbx_python_module], start=True,
                            configs={{"pbx_python.conf": pbx_python_conf,
                                     "extensions.conf": DIALPLAN}})


def test_the_application_sets_the_greeting(asterisk):
    assert asterisk.run_local("hello") == "RESULT Hello Ada"


def test_the_function_upper_cases_its_argument(asterisk):
    assert asterisk.eval_function("{func}(quiet please)") == "QUIET PLEASE"
'''


class SkeletonError(Exception):
    """The skeleton cannot be written (bad name, a file already there)."""


def names(module: str) -> dict[str, str]:
    """The dialplan names the skeleton declares for `module` (letters, digits and '_' only)."""
    if not module.isidentifier() or not module.isascii() or keyword.iskeyword(module):
        raise SkeletonError(f"{module!r} is not a Python module name (ASCII letters, digits and "
                            "'_', not starting with a digit)")
    camel = "".join(part[:1].upper() + part[1:] for part in module.split("_") if part)
    upper = module.upper().strip("_")
    return {"module": module, "app": f"{camel}Hello", "func": f"{upper}_UPPER",
            "var": f"{upper}_GREETING"}


def create(module: str, directory: Path) -> list[Path]:
    """Write the module and its test under directory; the paths written."""
    values = names(module)
    files = {directory / f"{module}.py": MODULE_TEMPLATE.format(**values),
             directory / "tests" / f"test_{module}.py": TEST_TEMPLATE.format(**values)}
    existing = [path for path in files if path.exists()]
    if existing:
        raise SkeletonError(f"{', '.join(map(str, existing))} already exist(s): nothing written "
                            "(pbx-python new never overwrites)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x") as f:        # "x": a file appearing meanwhile is not overwritten
            f.write(text)
    return list(files)
