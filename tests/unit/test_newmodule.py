"""pbx-python new <module>: a module skeleton and its test, never overwriting anything.

That the generated test passes against a real Asterisk: tests/integration/test_cli.py.
"""
from __future__ import annotations

import sys

import pytest

from pbx_python import doctor
from pbx_python.cli import main


def test_new_writes_the_module_and_its_test(tmp_path, capsys):
    assert main(["new", "greetings", "--dir", str(tmp_path)]) == 0
    module, test = tmp_path / "greetings.py", tmp_path / "tests" / "test_greetings.py"
    assert capsys.readouterr().out.splitlines() == [f"wrote {module}", f"wrote {test}"]
    assert "asterisk_factory" in test.read_text() and "pbx_python_module" in test.read_text()


def test_the_skeleton_declares_one_application_and_one_function(tmp_path):
    main(["new", "greetings", "--dir", str(tmp_path)])
    config = doctor.parse([("general", "python", sys.executable), ("general", "path", str(tmp_path)),
                           ("general", "modules", "greetings")])
    [check] = doctor.check_modules(config)
    assert check.lines() == ["ok    module greetings: applications GreetingsHello; "
                             "functions GREETINGS_UPPER; CLI commands (none)"]


def test_the_generated_test_is_valid_python(tmp_path):
    main(["new", "my_module", "--dir", str(tmp_path)])
    source = (tmp_path / "tests" / "test_my_module.py").read_text()
    compile(source, "test_my_module.py", "exec")
    assert "MyModuleHello(Ada)" in source and "MY_MODULE_UPPER(quiet please)" in source


def test_new_refuses_to_overwrite_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "tests").mkdir()
    existing = tmp_path / "tests" / "test_greetings.py"
    existing.write_text("mine\n")
    assert main(["new", "greetings", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pbx-python new: error: ")
    assert f"{existing} already exist(s): nothing written (pbx-python new never overwrites)" in err
    assert existing.read_text() == "mine\n"
    assert not (tmp_path / "greetings.py").exists()


@pytest.mark.parametrize("name", ["9lives", "my-module", "class", "grüße", "a.b"])
def test_new_refuses_a_name_that_is_not_a_python_module_name(tmp_path, capsys, name):
    assert main(["new", name, "--dir", str(tmp_path)]) == 1
    assert f"{name!r} is not a Python module name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
