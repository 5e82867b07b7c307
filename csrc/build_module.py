"""Build pbx_python.so with cffi's embedding API.

Usage: python csrc/build_module.py --asterisk-include DIR [--out DIR]

Extra compiler and linker flags come from $PBX_PYTHON_CFLAGS and $PBX_PYTHON_LDFLAGS (shell-split,
appended after the defaults), e.g. ``-fsanitize=address`` for the sanitizer build (`make
module-asan`); the output directory keeps such a build apart from the plain one.

The C body lives in csrc/pbx_python.c; this file only declares the C <-> Python boundary (the cdef)
and compiles. The Python that runs this script is the one embedded: its libpython is linked, and
its executable (a virtual environment's python, when run from one) becomes the module's default
`python =` setting.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

CDEF = """
struct ast_channel;

struct pyast_call {
    struct ast_channel *chan;
    const char *name;
    const char *data;
    int argc;
    char **argv;
};

struct pyast_conf_item {
    const char *category;
    const char *name;
    const char *value;
};

struct pyast_stack_info {
    int pystack_kb;
    int thread_kb;
    int unit_bytes;
    int reserve_kb;
    int units;
    int c_limit;
    int stacks;
    int pooled;
    int created;
};

struct pyast_out {
    const char *text;
};

extern "Python" int pyast_on_load(const struct pyast_conf_item *items, int nitems, int reload);
extern "Python" int pyast_on_cli(const char *command, int argc, const char *const *argv,
                                 struct pyast_out *out);
extern "Python" void pyast_on_shutdown(void);
extern "Python" void pyast_on_metrics(struct pyast_out *out);

int pyast_register_app(const char *name, const char *synopsis, const char *description);
int pyast_register_function(const char *name, const char *synopsis, const char *syntax,
                            const char *arguments, const char *description, const char *seealso);
int pyast_register_cli(const char *command, const char *summary, const char *usage);
void pyast_log(int level, const char *file, int line, const char *func, const char *msg);
void pyast_verbose(int level, const char *file, int line, const char *func, const char *msg);
ssize_t pyast_chan_info(struct ast_channel *chan, const char **out);
ssize_t pyast_getvar(struct ast_channel *chan, const char *name, const char **out);
int pyast_setvars(struct ast_channel *chan, const char *sets, size_t len);
int pyast_unsetvar(struct ast_channel *chan, const char *name);
ssize_t pyast_func_read(struct ast_channel *chan, const char *expr, const char **out);
int pyast_func_write(struct ast_channel *chan, const char *expr, const char *value);
ssize_t pyast_substitute(struct ast_channel *chan, const char *templ, const char **out);
ssize_t pyast_substitute_each(struct ast_channel *chan, const char *templates, size_t len,
                              const char **out);
ssize_t pyast_func_read_each(struct ast_channel *chan, const char *exprs, size_t len,
                             ssize_t maxlen, const char **out);
int pyast_exec(struct ast_channel *chan, const char *app, const char *data);
int pyast_check_hangup(struct ast_channel *chan);
ssize_t pyast_ref_getvar(const char *id, const char *name, const char **out);
int pyast_ref_setvars(const char *id, const char *sets, size_t len);
int pyast_ref_unsetvar(const char *id, const char *name);
ssize_t pyast_ref_func_read(const char *id, const char *expr, const char **out);
ssize_t pyast_ref_substitute(const char *id, const char *templ, const char **out);
int pyast_ref_alive(const char *id);
int pyast_ref_hangup(const char *id);
int pyast_add_extension(const char *context, const char *exten, int priority,
                        const char *app, const char *data);
void pyast_manager_event(const char *event, const char *body);
int pyast_thread_state_count(void);
void pyast_stack_info(struct pyast_stack_info *info);
void pyast_directories(const char **config_dir, const char **data_dir);
int pyast_switch_load(const char *table, size_t len);
ssize_t pyast_switch_dump(const char **out);
const char *ast_get_version(void);
extern int ast_verb_sys_level;
extern int option_debug;
"""

INIT_CODE = """
from _pbx_python_shim import ffi, lib
import pbx_python._runtime
pbx_python._runtime.bind(ffi, lib)
"""


def check_python() -> None:
    """Fail early, and clearly, on a Python that cannot be embedded."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise SystemExit(
            f"{sys.executable} was built without --enable-shared: it has no libpython to embed. "
            "Use a Python built with a shared libpython (Debian's python3 has one: "
            "apt-get install python3-dev) and create the virtual environment from it.")


def build(asterisk_include: Path, out_dir: Path, python: str | None = None,
          extra_cflags: list[str] | None = None, extra_ldflags: list[str] | None = None) -> Path:
    """Compile pbx_python.so into out_dir and return its path.

    extra_cflags/extra_ldflags default to $PBX_PYTHON_CFLAGS/$PBX_PYTHON_LDFLAGS.
    """
    check_python()
    if not (asterisk_include / "asterisk.h").is_file():
        raise SystemExit(f"{asterisk_include}/asterisk.h not found: point --asterisk-include at "
                         "the include directory of an Asterisk with its headers installed "
                         "(make install-headers)")
    libdir = sysconfig.get_config_var("LIBDIR")
    python = python or sys.executable
    if extra_cflags is None:
        extra_cflags = shlex.split(os.environ.get("PBX_PYTHON_CFLAGS", ""))
    if extra_ldflags is None:
        extra_ldflags = shlex.split(os.environ.get("PBX_PYTHON_LDFLAGS", ""))
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.embedding_init_code(INIT_CODE)
    ffi.set_source(
        "_pbx_python_shim",
        '#include "pbx_python.c"\n',
        sources=[str(HERE / "gil_handoff.c")],
        include_dirs=[str(HERE), str(asterisk_include)],
        define_macros=[
            ("AST_MODULE", '"pbx_python"'),
            ("AST_MODULE_SELF_SYM", "__internal_pbx_python_self"),
            ("PYAST_DEFAULT_PYTHON", '"%s"' % python.replace('"', '\\"')),
        ],
        extra_compile_args=["-pthread", "-fPIC", "-Wall", "-Wno-unused-function",
                            "-Wno-unused-parameter", "-O2", "-g",
                            f"-fmacro-prefix-map={HERE}/=", *extra_cflags],
        library_dirs=[libdir],
        extra_link_args=["-pthread", f"-Wl,-rpath,{libdir}", "-Wl,-z,nodelete", *extra_ldflags],
    )
    tmp = out_dir / "cffi-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    built = Path(ffi.compile(tmpdir=str(tmp), target="pbx_python.so", verbose=False))
    target = out_dir / "pbx_python.so"
    shutil.copyfile(built, str(target) + ".tmp")
    os.replace(str(target) + ".tmp", target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asterisk-include", required=True, type=Path)
    parser.add_argument("--out", default=Path("build"), type=Path)
    parser.add_argument("--python", default=None,
                        help="default python executable recorded in the module")
    args = parser.parse_args()
    print(build(args.asterisk_include, args.out, args.python))


if __name__ == "__main__":
    main()
