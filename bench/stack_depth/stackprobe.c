/*
 * stackprobe: measure the C stack a Python callable uses (bench/stack_depth/run.py builds it).
 *
 * measure(fn, units) paints the unused part of this thread's stack, lowers CPython's recursion
 * counter of this thread to `units` (3.11: recursion_remaining; 3.12+: c_recursion_remaining; 0:
 * unchanged), calls fn(), and returns (deepest stack bytes used, repr of the exception or "ok").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>

static void bounds(char **lo, char **hi)
{
	pthread_attr_t a;
	void *addr;
	size_t size;
	pthread_getattr_np(pthread_self(), &a);
	pthread_attr_getstack(&a, &addr, &size);
	pthread_attr_destroy(&a);
	*lo = addr;
	*hi = (char *) addr + size;
}

static int *units_field(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030C0000
	return &ts->c_recursion_remaining;
#else
	return &ts->recursion_remaining;
#endif
}

static __attribute__((noinline)) void paint(char *lo, char *hi)
{
	volatile char *p;
	for (p = lo; p < hi; p++) *p = (char) 0xA5;
}

/* measure(callable, units) -> (max_stack_bytes_used, units_consumed_max?, result_repr) */
static PyObject *measure(PyObject *self, PyObject *args)
{
	PyObject *fn, *res;
	int units, saved, delta = 0;
	char *lo, *hi, *p;
	volatile char here = 0;
	char *sp = (char *) &here;
	PyThreadState *ts = PyThreadState_Get();

	if (!PyArg_ParseTuple(args, "Oi", &fn, &units))
		return NULL;
	bounds(&lo, &hi);
	lo += 8192;
	paint(lo, sp - 16384);
	saved = *units_field(ts);
	if (units > 0 && saved > units) {
		delta = saved - units;
		*units_field(ts) -= delta;
	}
	res = PyObject_CallNoArgs(fn);
	*units_field(ts) += delta;
	for (p = lo; p < sp && *p == (char) 0xA5; p++);
	PyObject *exc = NULL;
	if (!res) {
		PyObject *t, *v, *tb;
		PyErr_Fetch(&t, &v, &tb);
		PyErr_NormalizeException(&t, &v, &tb);
		exc = PyObject_Repr(v ? v : t);
		Py_XDECREF(t); Py_XDECREF(v); Py_XDECREF(tb);
		if (!exc) { PyErr_Clear(); exc = PyUnicode_FromString("?"); }
	} else {
		exc = PyUnicode_FromString("ok");
		Py_DECREF(res);
	}
	return Py_BuildValue("(nN)", (Py_ssize_t)(sp - p), exc);
}

static PyObject *units(PyObject *self, PyObject *noargs)
{
	return PyLong_FromLong(*units_field(PyThreadState_Get()));
}

static PyObject *stack_info(PyObject *self, PyObject *noargs)
{
	char *lo, *hi;
	volatile char here = 0;
	bounds(&lo, &hi);
	return Py_BuildValue("(nn)", (Py_ssize_t)(hi - lo), (Py_ssize_t)((char *)&here - lo));
}

static PyMethodDef methods[] = {
	{"measure", measure, METH_VARARGS, NULL},
	{"units", units, METH_NOARGS, NULL},
	{"stack_info", stack_info, METH_NOARGS, NULL},
	{NULL}
};
static struct PyModuleDef mod = { PyModuleDef_HEAD_INIT, "stackprobe", NULL, -1, methods };
PyMODINIT_FUNC PyInit_stackprobe(void) { return PyModule_Create(&mod); }
