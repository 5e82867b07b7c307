/*
 * pbx_python: where the GIL's "locked" flag is, so that an entry can wait a few microseconds
 * for a GIL about to be released instead of going to sleep on it (see gil_wait() in
 * pbx_python.c and docs/BENCHMARKS.md, "Concurrency").
 *
 * The flag is in CPython's internal state, whose layout differs between versions: this file
 * alone is compiled with Py_BUILD_CORE_MODULE and the internal headers of the Python it is
 * built for, so the layout always matches. The flag is only read (relaxed), never written.
 */
#define Py_BUILD_CORE_MODULE 1
#include <Python.h>

#if defined(Py_GIL_DISABLED)
/* free-threaded build: there is no GIL to wait for */
const int *pyast_gil_locked_flag(void)
{
	return NULL;
}
#elif PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_interp.h"
#include "internal/pycore_gil.h"

const int *pyast_gil_locked_flag(void)
{
	PyInterpreterState *interp = PyInterpreterState_Main();

	return interp && interp->ceval.gil ? (const int *) &interp->ceval.gil->locked : NULL;
}
#elif PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_runtime.h"

const int *pyast_gil_locked_flag(void)
{
	return (const int *) &_PyRuntime.ceval.gil.locked;
}
#else
const int *pyast_gil_locked_flag(void)
{
	return NULL;
}
#endif
