/*
 * pbx_python -- Python dialplan applications and functions, in process.
 *
 * This file is the C body of pbx_python.so. It is not compiled on its own: the cffi builder
 * (csrc/build_module.py) pastes it into the generated module after Python.h and cffi's embedding
 * header, so the static "extern Python" entry points (pyast_on_*) and cffi_start_python() are
 * visible here.
 *
 * The C does only what must be C: module registration, trampolines from Asterisk callbacks into
 * Python, locking and copying around the Asterisk API, and the CLI/logger/manager glue. Every
 * decision (which Python callable serves which name, argument handling, error mapping, statistics,
 * configuration meaning) lives in the Python package pbx_python.
 *
 * Calls from Asterisk into Python take two routes:
 *  - The hot path (a dialplan application run, a function read or write, a switch extension's
 *    body) calls Python through the CPython C API: pbx_python._runtime keeps one entry callable
 *    per registered name in four dicts (APP_ENTRIES, FUNC_READ_ENTRIES, FUNC_WRITE_ENTRIES,
 *    SWITCH_ENTRIES); the trampoline takes the GIL,
 *    looks the name up, builds the arguments as str objects and calls the entry once. The entry
 *    returns its result and, if the Python code set variables, their batch; C copies both before
 *    it drops the GIL, then applies the assignments without it. One GIL hand-off per call.
 *  - Everything else (load/reload, CLI commands, shutdown) goes through cffi "extern Python"
 *    callbacks, and Python calls back into C through cffi's lib (pyast_* below).
 *
 * Rules kept here:
 *  - C registrations (applications, functions, CLI commands) live for the whole process; a reload
 *    only remaps names to Python callables. pbx_exec() uses the ast_app after the application
 *    returns, so unregistering an application a channel may run is a use after free.
 *  - Python is never finalised and the .so is never unmapped (linked with -z nodelete): Python
 *    keeps pointers into this image.
 *  - No channel lock is held while Python runs, and no Asterisk lock is taken with the GIL held;
 *    cffi releases the GIL around every C helper below.
 */

#define ASTMM_LIBC ASTMM_IGNORE
#include "asterisk.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sys/mman.h>

#include "asterisk/module.h"
#include "asterisk/pbx.h"
#include "asterisk/app.h"
#include "asterisk/channel.h"
#include "asterisk/logger.h"
#include "asterisk/cli.h"
#include "asterisk/config.h"
#include "asterisk/manager.h"
#include "asterisk/strings.h"
#include "asterisk/threadstorage.h"
#include "asterisk/linkedlists.h"
#include "asterisk/lock.h"
#include "asterisk/utils.h"
#include "asterisk/ast_version.h"
#include "asterisk/options.h"
#include "asterisk/res_prometheus.h"
#include "asterisk/paths.h"
#include "asterisk/astobj2.h"

#ifndef PYAST_DEFAULT_PYTHON
#define PYAST_DEFAULT_PYTHON ""
#endif

#define PYAST_CONFIG "pbx_python.conf"
#define PYAST_MAX_ARGS 128

/* ---- structures shared with Python (declared again in the cffi cdef) ---- */

/*! One call from Asterisk into Python: an application run, a function read or write. */
struct pyast_call {
	struct ast_channel *chan;   /*!< NULL for function reads without a channel */
	const char *name;           /*!< application or function name as registered */
	const char *data;           /*!< the raw argument string */
	int argc;                   /*!< arguments split by Asterisk's own parser */
	char **argv;
};

/*! One "key = value" line of pbx_python.conf, in file order. */
struct pyast_conf_item {
	const char *category;
	const char *name;
	const char *value;
};

/*! How Python's stack is set up, for 'python show status' and the load message. */
struct pyast_stack_info {
	int pystack_kb;             /*!< Python's own stack on each Asterisk thread; 0: it runs on theirs */
	int thread_kb;              /*!< Asterisk's thread stacks (AST_STACKSIZE) */
	int unit_bytes;             /*!< C stack counted per unit of recursion budget */
	int reserve_kb;             /*!< stack kept in reserve, not counted in the budget */
	int units;                  /*!< budget of a call from Asterisk, at most (0: not set by us) */
	int c_limit;                /*!< CPython's own limit of C-level recursion (0: none of its own) */
	int stacks;                 /*!< Python stacks mapped by live threads */
	int pooled;                 /*!< stacks of ended threads kept for new ones */
	int created;                /*!< stacks mapped since Python started */
};

/*! Text returned by Python (CLI output); valid until Python's next call on this thread. */
struct pyast_out {
	const char *text;
};

/* cffi entry points, defined by pbx_python/_runtime.py through ffi.def_extern(). */
static int pyast_on_load(const struct pyast_conf_item *items, int nitems, int reload);
static int pyast_on_cli(const char *command, int argc, const char *const *argv, struct pyast_out *out);
static void pyast_on_shutdown(void);
static void pyast_on_metrics(struct pyast_out *out);

/* ---- module state ---- */

static int python_started;
static volatile int shutting_down;

struct pyast_app {
	AST_LIST_ENTRY(pyast_app) list;
	char name[0];
};

struct pyast_func {
	AST_LIST_ENTRY(pyast_func) list;
	struct ast_custom_function *acf;
};

struct pyast_cli {
	struct ast_cli_entry e;     /* first member: the handler casts back */
	AST_LIST_ENTRY(pyast_cli) list;
	char *command;
	char *usage;
	char *summary;
};

static AST_LIST_HEAD_STATIC(registered_apps, pyast_app);
static AST_LIST_HEAD_STATIC(registered_funcs, pyast_func);
static AST_LIST_HEAD_STATIC(registered_clis, pyast_cli);

AST_THREADSTORAGE(pyast_result_buf);

/*! The entry tables of the hot path (see the top of this file), indexed by enum pyast_kind. */
enum pyast_kind { PYAST_APP, PYAST_READ, PYAST_WRITE, PYAST_SWITCH };
static PyObject *entry_tables[4];
static const char *const entry_table_names[4] = {
	"APP_ENTRIES", "FUNC_READ_ENTRIES", "FUNC_WRITE_ENTRIES", "SWITCH_ENTRIES",
};
static const char *const kind_names[4] = { "Application", "Function", "Function", "Switch extension" };

/* ---- helpers ---- */

/*!
 * Apply variable assignments given as "name\0value\0" pairs back to back, \a len bytes.
 * Python refuses empty names; one that gets here anyway is skipped.
 */
static void apply_sets(struct ast_channel *chan, const char *sets, size_t len)
{
	const char *end = sets + len, *name, *value;

	while (sets < end) {
		name = sets;
		value = name + strlen(name) + 1;
		if (value >= end) {
			break; /* malformed: a name without a value */
		}
		sets = value + strlen(value) + 1;
		if (!ast_strlen_zero(name)) {
			pbx_builtin_setvar_helper(chan, name, value);
		}
	}
}

/* ---- Asterisk's threads: Python thread state, C stack ---- */

/*
 * Stack depth (docs/DESIGN.md, "Stack depth"). Asterisk's threads have small stacks
 * (AST_STACKSIZE: 496 KB on 64-bit) while CPython's limits assume about 8 MB: recursion through C
 * (builtins, slots, properties, repr or json of nested data, Python's own parser) would overflow
 * an Asterisk thread's stack long before Python raises RecursionError. So:
 *  - Python runs on a stack of its own. An Asterisk thread calling Python gets, on its first call,
 *    a PYAST_PYSTACK_SIZE mapping (memory is used only as deep as the code goes), and each call
 *    from Asterisk into Python switches to it (pyast_stack_call(): a few instructions, x86-64).
 *    When the thread ends, its stack goes to a pool of at most PYAST_PYSTACK_POOL for the next
 *    new thread (every channel is a new thread: a fresh mapping would cost its first call two
 *    system calls and a page fault per page Python touches), or is unmapped. A kept stack keeps
 *    only its top PYAST_PYSTACK_KEEP in memory: the pages a deep recursion touched below it are
 *    given back (MADV_DONTNEED), so the pool holds at most 64 x 128 kB. Elsewhere, or if the mapping fails, Python runs on the thread's
 *    own stack with the smaller budget that leaves.
 *  - Each entry gets a recursion budget that fits the stack left: CPython's per-thread counter of
 *    recursion (3.11: all of it; 3.12 and 3.13: C-level only) is lowered to
 *    (stack left - reserve) / PYAST_UNIT_BYTES while the entry runs, and restored after it.
 *  - An entry left with too small a budget, by the stack or by Python's own counters (re-entry
 *    through Asterisk: an application running itself with exec_app, a function reading itself
 *    through ${...}) is not run: it is logged and fails, and the C helper that led to it returns
 *    PYAST_REFUSED, which Python raises as RecursionError in the calling code's own frame.
 */

/*! Python's own stack on each Asterisk thread: what CPython's limits are made for (ulimit -s). */
#define PYAST_PYSTACK_SIZE (8 * 1024 * 1024)
/*! Inaccessible pages below it: wide enough that no C frame steps over them. */
#define PYAST_PYSTACK_GUARD (64 * 1024)
/*! Stacks of ended threads kept for new ones. */
#define PYAST_PYSTACK_POOL 64
/*! What a kept stack keeps in memory: its top (where calls run); deeper pages are released. */
#define PYAST_PYSTACK_KEEP (128 * 1024)
/*! An entry needs this many units of budget to run at all (its own frames, logging an error). */
#define PYAST_MIN_UNITS 50

#if PY_VERSION_HEX >= 0x030E0000
/* CPython 3.14 measures the real stack itself (found once per thread state): no budget, and no
 * stack of our own, which it would not know of. Only the guard at entry is kept. */
#define PYAST_UNIT_BYTES 2048
#elif PY_VERSION_HEX >= 0x030C0000
/* 3.12, 3.13: c_recursion_remaining counts C-level recursion (a Python frame entered from C costs
 * 2 units); Python-to-Python calls use no C stack and keep sys.getrecursionlimit(). Worst measured
 * on x86-64: 2.5 KB per unit (a list.sort() whose __lt__ sorts again). */
#define PYAST_UNITS(ts) ((ts)->c_recursion_remaining)
#define PYAST_UNIT_BYTES 3072
#else
/* 3.11: one counter (sys.getrecursionlimit()) for Python frames and C recursion alike; a Python
 * frame entered from C costs 1 unit. Worst measured: 4.8 KB per unit (the same sort). The counter
 * can be lowered per thread: _Py_CheckRecursiveCall() resets the thread's limit to the
 * interpreter's but keeps its depth, and lowering the remaining count is adding depth. */
#define PYAST_UNITS(ts) ((ts)->recursion_remaining)
#define PYAST_UNIT_BYTES 6144
#endif

#if defined(__x86_64__) && PY_VERSION_HEX < 0x030E0000 && !defined(PYAST_NO_STACK_SWITCH)
#define PYAST_STACK_SWITCH 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PYAST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PYAST_ASAN 1
#endif
#endif
#ifdef PYAST_ASAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/asan_interface.h>
#endif

/*! What a C helper returns when Python code it led to was not run: recursion too deep. */
#define PYAST_REFUSED INT_MIN

#ifdef PYAST_STACK_SWITCH
/*!
 * Call fn(arg) with the stack pointer at \a top (16-byte aligned), then return on the caller's
 * stack. The caller's stack pointer is kept in %rbp, which the CFI names as the frame address, so
 * debuggers and unwinders walk from Python's stack back into Asterisk's.
 */
void pyast_stack_call(void *arg, void (*fn)(void *), char *top) __attribute__((visibility("hidden")));
__asm__(
	"	.pushsection .text\n"
	"	.p2align 4\n"
	"	.globl pyast_stack_call\n"
	"	.hidden pyast_stack_call\n"
	"	.type pyast_stack_call, @function\n"
	"pyast_stack_call:\n"
	"	.cfi_startproc\n"
	"	pushq %rbp\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset %rbp, -16\n"
	"	movq %rsp, %rbp\n"
	"	.cfi_def_cfa_register %rbp\n"
	"	movq %rdx, %rsp\n"
	"	callq *%rsi\n"
	"	movq %rbp, %rsp\n"
	"	popq %rbp\n"
	"	.cfi_def_cfa %rsp, 8\n"
	"	retq\n"
	"	.cfi_endproc\n"
	"	.size pyast_stack_call, .-pyast_stack_call\n"
	"	.popsection\n"
);
#endif

/*! Per Asterisk thread that called Python (thread storage; freed when the thread ends). */
struct pyast_thread {
	PyThreadState *pinned;      /*!< the Python thread state python_enter() created, or NULL */
	char *stack_lo;             /*!< the thread's own stack: lowest usable address (NULL: not known yet) */
	size_t stack_size;
	char *pystack;              /*!< lowest address of Python's stack on this thread, NULL if none */
	int pystack_failed;         /*!< mapping it failed once: not tried again on this thread */
	int nesting;                /*!< Python entries running on this thread */
	int refused;                /*!< an entry was refused since a C helper last cleared this */
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare" /* glibc's PTHREAD_STACK_MIN is a long */
/*! The stack size Asterisk gives its threads (AST_STACKSIZE). */
static size_t ast_thread_stack_size(void)
{
	return AST_STACKSIZE;
}
#pragma GCC diagnostic pop

static int thread_states; /*!< Python thread states pinned by live Asterisk threads */
static int pystacks;      /*!< Python stacks mapped by live threads */
static int pystacks_created; /*!< Python stacks mapped since the start (not taken from the pool) */

/*! Stacks of ended threads, for new threads (pystack_map()). */
AST_MUTEX_DEFINE_STATIC(pystack_pool_lock);
static char *pystack_pool[PYAST_PYSTACK_POOL];
static int pystack_pooled;

/*! A stack (its usable part) back to the pool, or unmapped when the pool is full. */
static void pystack_release(char *pystack)
{
#ifdef PYAST_ASAN
	/* frames of the thread that ended may have left poisoned red zones on it */
	ASAN_UNPOISON_MEMORY_REGION(pystack, PYAST_PYSTACK_SIZE);
#endif
	/* a deep recursion may have touched megabytes: a kept stack holds only its top */
	if (madvise(pystack, PYAST_PYSTACK_SIZE - PYAST_PYSTACK_KEEP, MADV_DONTNEED)) {
		munmap(pystack - PYAST_PYSTACK_GUARD, PYAST_PYSTACK_SIZE + PYAST_PYSTACK_GUARD);
		return;
	}
	ast_mutex_lock(&pystack_pool_lock);
	if (pystack_pooled < PYAST_PYSTACK_POOL) {
		pystack_pool[pystack_pooled++] = pystack;
		pystack = NULL;
	}
	ast_mutex_unlock(&pystack_pool_lock);
	if (pystack) {
		munmap(pystack - PYAST_PYSTACK_GUARD, PYAST_PYSTACK_SIZE + PYAST_PYSTACK_GUARD);
	}
}

/*! A stack from the pool, or NULL when it is empty. */
static char *pystack_reuse(void)
{
	char *pystack = NULL;

	ast_mutex_lock(&pystack_pool_lock);
	if (pystack_pooled) {
		pystack = pystack_pool[--pystack_pooled];
	}
	ast_mutex_unlock(&pystack_pool_lock);
	return pystack;
}

/*!
 * Thread storage destructor: drops the Python thread state pinned by python_enter() and gives
 * Python's stack back to the pool. An Asterisk thread (one per channel) gets one Python thread state on its first
 * call into Python and keeps it until it exits: creating and destroying one per call would cost
 * more than the call itself.
 */
static void thread_end(void *data)
{
	struct pyast_thread *t = data;

	/* Python's own thread-local pointer to the state may already be cleared (thread-specific
	 * data is destroyed in no set order), so the state is kept here and deleted directly. */
	if (t->pinned) {
		PyEval_RestoreThread(t->pinned);
		PyThreadState_Clear(t->pinned);
		PyThreadState_DeleteCurrent(); /* and releases the GIL */
		ast_atomic_fetchadd_int(&thread_states, -1);
	}
	if (t->pystack) {
		pystack_release(t->pystack);
		ast_atomic_fetchadd_int(&pystacks, -1);
	}
	ast_free(t);
}

AST_THREADSTORAGE_CUSTOM(pyast_thread_storage, NULL, thread_end);

/*! This thread's state, with its stack bounds found on first use. NULL: no memory. */
static struct pyast_thread *thread_get(void)
{
	struct pyast_thread *t = ast_threadstorage_get(&pyast_thread_storage, sizeof(*t));
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (t && !t->stack_lo) {
		if (!pthread_getattr_np(pthread_self(), &attr)) {
			if (!pthread_attr_getstack(&attr, &addr, &size)) {
				t->stack_lo = addr;
				t->stack_size = size;
			}
			pthread_attr_destroy(&attr);
		}
		if (!t->stack_lo) { /* unknown: assume an Asterisk thread, half used */
			t->stack_size = ast_thread_stack_size();
			t->stack_lo = (char *) __builtin_frame_address(0) - t->stack_size / 2;
		}
	}
	return t;
}

static int on_pystack(const struct pyast_thread *t, const char *sp)
{
	return t->pystack && sp > t->pystack && sp <= t->pystack + PYAST_PYSTACK_SIZE;
}

/*! Bytes of stack left below \a sp; *size gets the size of that stack. */
static size_t stack_left(const struct pyast_thread *t, const char *sp, size_t *size)
{
	if (on_pystack(t, sp)) {
		*size = PYAST_PYSTACK_SIZE;
		return sp - t->pystack;
	}
	*size = t->stack_size;
	return sp > t->stack_lo ? sp - t->stack_lo : 0;
}

/*!
 * Recursion units Python may spend with \a left bytes left of a \a size bytes stack: an eighth of
 * the stack is kept in reserve (for C that Python's counters do not see, such as its parser, up
 * to 0.9 MB), the rest is counted at PYAST_UNIT_BYTES a unit.
 */
static int stack_units(size_t left, size_t size)
{
	size_t reserve = size / 8;

	if (left <= reserve) {
		return 0;
	}
	left = (left - reserve) / PYAST_UNIT_BYTES;
	return left > INT_MAX ? INT_MAX : (int) left;
}

#ifdef PYAST_STACK_SWITCH
/*! Map Python's stack for this thread if not done yet. \return 0 when there is one. */
static int pystack_map(struct pyast_thread *t)
{
	char *map;

	if (t->pystack || t->pystack_failed) {
		return t->pystack ? 0 : -1;
	}
	if ((t->pystack = pystack_reuse())) {
		ast_atomic_fetchadd_int(&pystacks, +1);
		return 0;
	}
	map = mmap(NULL, PYAST_PYSTACK_SIZE + PYAST_PYSTACK_GUARD, PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (map == MAP_FAILED || mprotect(map, PYAST_PYSTACK_GUARD, PROT_NONE)) {
		ast_log(LOG_WARNING, "Cannot map a %d KB stack for Python on this thread (%s): Python runs "
			"on the thread's own %zu KB stack, with a smaller recursion budget\n",
			PYAST_PYSTACK_SIZE / 1024, strerror(errno), t->stack_size / 1024);
		if (map != MAP_FAILED) {
			munmap(map, PYAST_PYSTACK_SIZE + PYAST_PYSTACK_GUARD);
		}
		t->pystack_failed = 1;
		return -1;
	}
	t->pystack = map + PYAST_PYSTACK_GUARD;
	ast_atomic_fetchadd_int(&pystacks, +1);
	ast_atomic_fetchadd_int(&pystacks_created, +1);
	return 0;
}
#endif

static PyGILState_STATE python_enter(struct pyast_thread *t)
{
	/* Only a state created here is pinned: one that exists already belongs to Python's main
	 * thread or to cffi (which keeps its own alive, and frees it at thread exit itself). */
	int fresh = !t->pinned && !PyGILState_GetThisThreadState();
	PyGILState_STATE gil = PyGILState_Ensure();

	if (fresh) {
		PyGILState_Ensure(); /* the pin: one more reference, never released by PyGILState */
		t->pinned = PyThreadState_Get();
		ast_atomic_fetchadd_int(&thread_states, +1);
	}
	return gil;
}

/* ---- waiting for the GIL (csrc/gil_handoff.c) ---- */

void pyast_gil_handoff_init(void);
void pyast_gil_handoff_spin(long ns);
int pyast_gil_handoff_enter(void);
void pyast_gil_handoff_leave(void);

/*! How long the first thread in line for the GIL spins: pbx_python.conf gil_spin (µs). */
#define PYAST_GIL_SPIN_DEFAULT_US 20
#define PYAST_GIL_SPIN_MAX_US 1000

/*! [general] gil_spin from pbx_python.conf (validated and reported by Python's config). */
static void gil_spin_configure(const char *value)
{
	char *end;
	long us = PYAST_GIL_SPIN_DEFAULT_US;

	if (!ast_strlen_zero(value)) {
		errno = 0;
		us = strtol(value, &end, 10);
		if (errno || end == value || *ast_skip_blanks(end) || us < 0 || us > PYAST_GIL_SPIN_MAX_US) {
			us = PYAST_GIL_SPIN_DEFAULT_US;
		}
	}
	pyast_gil_handoff_spin(us * 1000L);
}

/*! One call from Asterisk into Python, run by python_call(). */
struct pyast_job {
	const char *what;           /*!< for messages: "Application", "Function", ... */
	const char *name;
	void (*run)(struct pyast_job *job); /*!< called with the GIL held and the budget set */
	struct pyast_thread *thread;
	int refused;                /*!< set when it was not run: too little stack left */
};

/*! Run \a data (a job) on the stack the caller is on: guard, GIL, budget. */
static void job_run(void *data)
{
	struct pyast_job *job = data;
	struct pyast_thread *t = job->thread;
	size_t size, left = stack_left(t, __builtin_frame_address(0), &size);
	int units = stack_units(left, size), ran = 0;
	PyGILState_STATE gil;
#ifdef PYAST_UNITS
	PyThreadState *ts;
	int lowered;
#endif

	if (units >= PYAST_MIN_UNITS) {
		/* the outermost entry on this thread queues for the GIL (a nested one may be running
		 * inside Python code that released the GIL for a C call: it takes it directly) */
		int queued = !t->nesting && pyast_gil_handoff_enter();

		t->nesting++;
		gil = python_enter(t);
		if (queued) {
			pyast_gil_handoff_leave();
		}
#ifdef PYAST_UNITS
		ts = PyThreadState_Get();
		lowered = PYAST_UNITS(ts) > units ? PYAST_UNITS(ts) - units : 0;
		PYAST_UNITS(ts) -= lowered;
		/* Python's own counters too must leave room for the entry to log an error: entries
		 * nested through Asterisk share them */
		if (PYAST_UNITS(ts) >= PYAST_MIN_UNITS
#if PY_VERSION_HEX >= 0x030C0000
			&& ts->py_recursion_remaining >= PYAST_MIN_UNITS
#endif
			) {
			job->run(job);
			ran = 1;
		}
		PYAST_UNITS(ts) += lowered;
#else
		job->run(job);
		ran = 1;
#endif
		PyGILState_Release(gil);
		t->nesting--;
	}
	if (!ran) {
		t->refused = 1;
		job->refused = 1;
		ast_log(LOG_ERROR, "%s %s not run: recursion too deep (%d Python calls already running on "
			"this thread, %zu KB of C stack left); is Python code running itself again through "
			"Asterisk? The code that led to it gets a RecursionError\n",
			job->what, job->name, t->nesting, left / 1024);
	}
}

#ifdef PYAST_STACK_SWITCH
/*! job_run() at the top of Python's stack. */
static void job_run_switched(void *data)
{
#ifdef PYAST_ASAN
	const void *bottom;
	size_t size;

	__sanitizer_finish_switch_fiber(NULL, &bottom, &size);
#endif
	job_run(data);
#ifdef PYAST_ASAN
	__sanitizer_start_switch_fiber(NULL, bottom, size); /* this stack's frames end here */
#endif
}
#endif

/*!
 * Run \a job: on Python's own stack, unless the caller is on it already (a re-entry) or the
 * thread's own stack is large (4 MB or more: Asterisk's main thread, threads Python started);
 * refused (job->refused set, logged) when too little stack is left.
 */
static void python_call(struct pyast_job *job)
{
	struct pyast_thread *t = thread_get();

	if (!t) {
		job->refused = 1;
		ast_log(LOG_ERROR, "%s %s not run: out of memory\n", job->what, job->name);
		return;
	}
	job->thread = t;
#ifdef PYAST_STACK_SWITCH
	if (t->stack_size < PYAST_PYSTACK_SIZE / 2 && !on_pystack(t, __builtin_frame_address(0))
		&& !pystack_map(t)) {
#ifdef PYAST_ASAN
		void *fake_stack = NULL;

		__sanitizer_start_switch_fiber(&fake_stack, t->pystack, PYAST_PYSTACK_SIZE);
#endif
		pyast_stack_call(job, job_run_switched, t->pystack + PYAST_PYSTACK_SIZE);
#ifdef PYAST_ASAN
		__sanitizer_finish_switch_fiber(fake_stack, NULL, NULL);
#endif
		return;
	}
#endif
	job_run(job);
}

/*! Before an Asterisk call that may run Python again: forget earlier refusals. */
static struct pyast_thread *reentry_begin(void)
{
	struct pyast_thread *t = ast_threadstorage_get(&pyast_thread_storage, sizeof(*t));

	if (t) {
		t->refused = 0;
	}
	return t;
}

/*! After it: \a res, or PYAST_REFUSED when a Python entry was refused meanwhile. */
static ssize_t reentry_end(struct pyast_thread *t, ssize_t res)
{
	if (t && t->refused) {
		t->refused = 0;
		return PYAST_REFUSED;
	}
	return res;
}

/*! Log the pending Python exception, with its traceback, to the Asterisk log. GIL held. */
static void log_python_exception(const char *what)
{
	PyObject *type, *value, *tb, *tbmod, *lines = NULL, *text = NULL, *empty, *utf8;

	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	tbmod = PyImport_ImportModule("traceback");
	if (tbmod) {
		lines = PyObject_CallMethod(tbmod, "format_exception", "OOO", type ? type : Py_None,
			value ? value : Py_None, tb ? tb : Py_None);
	}
	if (lines && (empty = PyUnicode_FromString(""))) {
		text = PyUnicode_Join(empty, lines);
		Py_DECREF(empty);
	}
	if (!text && value) {
		/* formatting the traceback failed (a RecursionError at the limit): the exception alone */
		PyErr_Clear();
		text = PyObject_Str(value);
		utf8 = text ? PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace") : NULL;
		ast_log(LOG_ERROR, "%s (no traceback):\n%s: %s\n", what, Py_TYPE(value)->tp_name,
			utf8 ? PyBytes_AS_STRING(utf8) : "");
	} else {
		/* backslashreplace: a message may hold lone surrogates, which UTF-8 cannot encode */
		utf8 = text ? PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace") : NULL;
		ast_log(LOG_ERROR, "%s:\n%s", what, utf8 ? PyBytes_AS_STRING(utf8) : "(no traceback)\n");
	}
	PyErr_Clear();
	Py_XDECREF(utf8);
	Py_XDECREF(text);
	Py_XDECREF(lines);
	Py_XDECREF(tbmod);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	PyErr_Clear();
}

/* ---- trampolines: Asterisk -> Python ---- */

/*! What one Python entry gave back, copied so that it outlives the GIL. */
struct pyast_result {
	PyObject *value;            /*!< the entry's own result (int, bytes or None); a new reference */
	char *sets;                 /*!< deferred assignments, "name\0value\0"...; ast_free it */
	size_t setslen;
};

/*! Names looked up recently, as Python strings (their hash computed once). GIL held. */
#define PYAST_KEY_CACHE 64
#define PYAST_KEY_CACHED_LEN 48
static struct {
	char name[PYAST_KEY_CACHED_LEN];
	PyObject *str;
} key_cache[PYAST_KEY_CACHE];

/*!
 * \a key as a Python string (a new reference), from a small cache: a call does not build and
 * hash its name each time. Direct-mapped by a hash of the name, checked by comparing it.
 */
static PyObject *entry_key(const char *key)
{
	unsigned int h = 2166136261u; /* FNV-1a */
	const char *c;
	size_t len;
	PyObject *str;

	for (c = key; *c; c++) {
		h = (h ^ (unsigned char) *c) * 16777619u;
	}
	len = c - key;
	h %= PYAST_KEY_CACHE;
	if (key_cache[h].str && !strcmp(key_cache[h].name, key)) {
		return Py_NewRef(key_cache[h].str);
	}
	if (!(str = PyUnicode_FromStringAndSize(key, len))) {
		return NULL;
	}
	if (len < PYAST_KEY_CACHED_LEN) {
		Py_XSETREF(key_cache[h].str, Py_NewRef(str));
		memcpy(key_cache[h].name, key, len + 1);
	}
	return str;
}

/*!
 * Look up the entry for \a key in \a kind's table and call it as
 * entry(call_address, channel_address_or_None, [value,] *arguments). GIL held.
 * \return 0 with \a out filled, -1 (logged) when there is no entry or it raised.
 */
static int call_entry(enum pyast_kind kind, const char *key, struct pyast_call *call,
	const char *value, struct pyast_result *out)
{
	PyObject *small[PYAST_MAX_ARGS + 3], **stack = small;
	PyObject *name, *entry, *result;
	Py_ssize_t n = 0, i;

	memset(out, 0, sizeof(*out));
	if (!(name = entry_key(key))) {
		log_python_exception("pbx_python: cannot pass a name to Python");
		return -1;
	}
	entry = PyDict_GetItemWithError(entry_tables[kind], name); /* borrowed */
	Py_DECREF(name);
	if (!entry) {
		if (PyErr_Occurred()) {
			log_python_exception("pbx_python: entry lookup failed");
		} else {
			ast_log(LOG_ERROR, "%s %s is not provided by any Python module\n", kind_names[kind], call->name);
		}
		return -1;
	}
	if (call->argc + 3 > (int) ARRAY_LEN(small)
		&& !(stack = ast_malloc((call->argc + 3) * sizeof(*stack)))) {
		return -1; /* more arguments than PYAST_MAX_ARGS (split_args allows any number) */
	}
	Py_INCREF(entry); /* a reload may replace it in the table while it runs */
	stack[n++] = PyLong_FromVoidPtr(call);
	stack[n++] = call->chan ? PyLong_FromVoidPtr(call->chan) : Py_NewRef(Py_None);
	if (value) {
		stack[n++] = PyUnicode_DecodeUTF8(value, strlen(value), "surrogateescape");
	}
	for (i = 0; i < call->argc; i++) {
		stack[n++] = PyUnicode_DecodeUTF8(call->argv[i], strlen(call->argv[i]), "surrogateescape");
	}
	for (i = 0; i < n && stack[i]; i++) {
		/* stops at the first argument that could not be built (no memory, bad UTF-8 name) */
	}
	if (i < n) {
		log_python_exception("pbx_python: cannot pass the arguments to Python");
		result = NULL;
	} else if (!(result = PyObject_Vectorcall(entry, stack, n, NULL))) {
		log_python_exception("pbx_python internal error");
	}
	for (i = 0; i < n; i++) {
		Py_XDECREF(stack[i]);
	}
	if (stack != small) {
		ast_free(stack);
	}
	Py_DECREF(entry);
	if (!result) {
		return -1;
	}
	/* (value, b"name\0value\0...") when the Python code left assignments for C to apply */
	if (PyTuple_CheckExact(result) && PyTuple_GET_SIZE(result) == 2) {
		PyObject *sets = PyTuple_GET_ITEM(result, 1);
		char *bytes;
		Py_ssize_t len;

		out->value = Py_NewRef(PyTuple_GET_ITEM(result, 0));
		if (PyBytes_AsStringAndSize(sets, &bytes, &len)) {
			log_python_exception("pbx_python internal error (deferred assignments)");
		} else if (len > 0 && (out->sets = ast_malloc(len))) {
			memcpy(out->sets, bytes, len);
			out->setslen = len;
		}
		Py_DECREF(result);
	} else {
		out->value = result;
	}
	return 0;
}

/*!
 * Split the argument string as AST_STANDARD_APP_ARGS does, into \a argv (PYAST_MAX_ARGS
 * entries) or, for more arguments, into an array allocated with the copy: every argument is
 * passed on its own, none is left joined to the last. Returns the block to ast_free.
 */
static char *split_args(struct pyast_call *call, char **argv)
{
	const char *data = S_OR(call->data, ""), *c;
	size_t len = strlen(data), slots = 2; /* one more than the most arguments there are */
	char *block, *parse;

	for (c = data; *c; c++) {
		slots += *c == ',';
	}
	if (slots <= PYAST_MAX_ARGS) {
		block = parse = ast_strdup(data);
	} else {
		block = ast_malloc(slots * sizeof(*argv) + len + 1);
		argv = (char **) block;
		parse = block ? block + slots * sizeof(*argv) : NULL;
	}
	if (block) {
		if (parse != block) {
			memcpy(parse, data, len + 1);
		}
		call->argv = argv;
		call->argc = __ast_app_separate_args(parse, ',', 1, argv, slots <= PYAST_MAX_ARGS ?
			PYAST_MAX_ARGS : slots);
	}
	return block;
}

/*! One call of an entry (an application, a function read or write) as a job. */
struct entry_job {
	struct pyast_job job;       /* first member: entry_run() casts back */
	enum pyast_kind kind;
	const char *key;
	struct pyast_call *call;
	const char *value;
	struct ast_str **buf;
	ssize_t len;
	struct pyast_result out;
	int res;
};

/*! Call the entry and read its result. GIL held. */
static void entry_run(struct pyast_job *job)
{
	struct entry_job *ej = (struct entry_job *) job;
	char *bytes;
	Py_ssize_t size;

	if (call_entry(ej->kind, ej->key, ej->call, ej->value, &ej->out)) {
		return;
	}
	if (ej->buf) {
		if (ej->out.value != Py_None && !PyBytes_AsStringAndSize(ej->out.value, &bytes, &size)) {
			ast_str_set_substr(ej->buf, ej->len, bytes, size);
			ej->res = 0;
		}
	} else if (PyLong_Check(ej->out.value)) {
		ej->res = (int) PyLong_AsLong(ej->out.value);
	}
	if (PyErr_Occurred()) { /* a value of the wrong type, or an int out of range */
		log_python_exception("pbx_python internal error (result)");
		ej->res = -1;
	}
	Py_DECREF(ej->out.value);
}

/*!
 * Run one call from Asterisk: split the arguments, call the entry for \a key (python_call():
 * Python's stack, the GIL, a recursion budget), then (GIL released) apply the variable
 * assignments it left.
 * \param buf where a function read's value goes (NULL for applications and writes)
 * \return the application's or the write's int result, 0 for a read that gave a value; -1 on
 *         failure (logged)
 */
static int run_call(enum pyast_kind kind, const char *key, struct pyast_call *call,
	const char *value, struct ast_str **buf, ssize_t len)
{
	struct entry_job ej = {
		.job = { .what = kind_names[kind], .name = call->name, .run = entry_run },
		.kind = kind, .key = key, .call = call, .value = value, .buf = buf, .len = len, .res = -1,
	};
	char *argv[PYAST_MAX_ARGS];
	char *parse;

	if (shutting_down || !(parse = split_args(call, argv))) {
		return -1;
	}
	python_call(&ej.job);
	if (ej.job.refused && kind == PYAST_APP && call->chan) {
		pbx_builtin_setvar_helper(call->chan, "PYTHON_ERROR",
			"RecursionError: maximum recursion depth exceeded (too little C stack left to run it)");
	}
	if (ej.out.sets) {
		apply_sets(call->chan, ej.out.sets, ej.out.setslen);
		ast_free(ej.out.sets);
	}
	ast_free(parse);
	return ej.res;
}

static int app_exec(struct ast_channel *chan, const char *data)
{
	struct pyast_call call = { .chan = chan, .name = ast_channel_appl(chan), .data = data };
	char *key = ast_strdupa(call.name);

	/* application names are case-insensitive: the table is keyed in lower case */
	return run_call(PYAST_APP, ast_str_to_lower(key), &call, NULL, NULL, 0);
}

static int func_read2(struct ast_channel *chan, const char *function, char *data,
	struct ast_str **buf, ssize_t len)
{
	struct pyast_call call = { .chan = chan, .name = function, .data = S_OR(data, "") };

	return run_call(PYAST_READ, function, &call, NULL, buf, len);
}

static int func_write(struct ast_channel *chan, const char *function, char *data, const char *value)
{
	struct pyast_call call = { .chan = chan, .name = function, .data = S_OR(data, "") };

	return run_call(PYAST_WRITE, function, &call, S_OR(value, ""), NULL, 0);
}

/*! A Python CLI command as a job. */
struct cli_job {
	struct pyast_job job;       /* first member: cli_run() casts back */
	struct ast_cli_args *a;
	struct pyast_out out;
	int res;
};

static void cli_run(struct pyast_job *job)
{
	struct cli_job *cj = (struct cli_job *) job;

	/* cffi's callback takes the GIL again (nested) and catches what Python raises */
	cj->res = pyast_on_cli(job->name, cj->a->argc, (const char *const *) cj->a->argv, &cj->out);
}

static char *cli_handler(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	struct pyast_cli *pc = (struct pyast_cli *) e;
	struct cli_job cj = {
		.job = { .what = "CLI command", .name = pc->command, .run = cli_run }, .a = a, .res = 2,
	};

	switch (cmd) {
	case CLI_INIT:
		e->command = pc->command;
		e->usage = pc->usage;
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (shutting_down) {
		return CLI_FAILURE;
	}
	python_call(&cj.job);
	if (cj.job.refused) {
		ast_cli(a->fd, "Not run: too little C stack left on this thread (see the log)\n");
	}
	if (cj.out.text) {
		ast_cli(a->fd, "%s", cj.out.text);
	}
	return cj.res == 0 ? CLI_SUCCESS : (cj.res == 1 ? CLI_SHOWUSAGE : CLI_FAILURE);
}

/* ---- C API for Python (each call is one GIL hand-off: keep them coarse) ---- */

/*!
 * \brief Register a dialplan application served by Python.
 * \retval 0 registered now
 * \retval 1 already registered by this module (kept as is: registrations are never replaced)
 * \retval -1 the name belongs to another module, or no memory
 */
static int pyast_register_app(const char *name, const char *synopsis, const char *description)
{
	struct pyast_app *app;
	int res = 0;

	AST_LIST_LOCK(&registered_apps);
	AST_LIST_TRAVERSE(&registered_apps, app, list) {
		if (!strcasecmp(app->name, name)) {
			AST_LIST_UNLOCK(&registered_apps);
			return 1;
		}
	}
	app = ast_calloc(1, sizeof(*app) + strlen(name) + 1);
	if (!app) {
		res = -1;
	} else {
		strcpy(app->name, name); /* safe: sized above */
		if (ast_register_application2(name, app_exec, synopsis, description, AST_MODULE_SELF)) {
			ast_free(app);
			res = -1;
		} else {
			AST_LIST_INSERT_TAIL(&registered_apps, app, list);
		}
	}
	AST_LIST_UNLOCK(&registered_apps);
	return res;
}

/*! \brief Register a dialplan function served by Python (same return values as for apps). */
static int pyast_register_function(const char *name, const char *synopsis, const char *syntax,
	const char *arguments, const char *description, const char *seealso)
{
	struct pyast_func *pf;
	struct ast_custom_function *acf;
	int res = 0;

	AST_LIST_LOCK(&registered_funcs);
	AST_LIST_TRAVERSE(&registered_funcs, pf, list) {
		if (!strcmp(pf->acf->name, name)) {
			AST_LIST_UNLOCK(&registered_funcs);
			return 1;
		}
	}
	pf = ast_calloc(1, sizeof(*pf));
	acf = ast_calloc(1, sizeof(*acf));
	if (!pf || !acf || ast_string_field_init(acf, 256)) {
		ast_free(pf);
		ast_free(acf);
		AST_LIST_UNLOCK(&registered_funcs);
		return -1;
	}
	acf->name = ast_strdup(name);
	ast_string_field_set(acf, synopsis, synopsis);
	ast_string_field_set(acf, syntax, syntax);
	ast_string_field_set(acf, arguments, arguments);
	ast_string_field_set(acf, desc, description);
	ast_string_field_set(acf, seealso, seealso);
	acf->docsrc = AST_STATIC_DOC;
	acf->read2 = func_read2;
	acf->write = func_write;
	if (!acf->name || ast_custom_function_register(acf)) {
		ast_free((char *) acf->name);
		ast_string_field_free_memory(acf);
		ast_free(acf);
		ast_free(pf);
		res = -1;
	} else {
		pf->acf = acf;
		AST_LIST_INSERT_TAIL(&registered_funcs, pf, list);
	}
	AST_LIST_UNLOCK(&registered_funcs);
	return res;
}

/*! \brief Register a CLI command served by Python (same return values as for apps). */
static int pyast_register_cli(const char *command, const char *summary, const char *usage)
{
	struct pyast_cli *pc;
	int res = 0;

	AST_LIST_LOCK(&registered_clis);
	AST_LIST_TRAVERSE(&registered_clis, pc, list) {
		if (!strcmp(pc->command, command)) {
			AST_LIST_UNLOCK(&registered_clis);
			return 1;
		}
	}
	pc = ast_calloc(1, sizeof(*pc));
	if (pc) {
		pc->command = ast_strdup(command);
		pc->usage = ast_strdup(usage);
		pc->summary = ast_strdup(summary);
	}
	if (!pc || !pc->command || !pc->usage || !pc->summary) {
		res = -1;
	} else {
		/* summary is a const member: build the entry, then copy it into place */
		struct ast_cli_entry proto = AST_CLI_DEFINE(cli_handler, pc->summary);

		memcpy(&pc->e, &proto, sizeof(proto));
		if (ast_cli_register(&pc->e)) {
			res = -1;
		} else {
			AST_LIST_INSERT_TAIL(&registered_clis, pc, list);
		}
	}
	if (res && pc) {
		ast_free(pc->command);
		ast_free(pc->usage);
		ast_free(pc->summary);
		ast_free(pc);
	}
	AST_LIST_UNLOCK(&registered_clis);
	return res;
}

/*!
 * \brief Log one entry. Python maps its levels to these four; anything else (which Python never
 * passes) is logged at ERROR rather than used as an index into the logger's level tables.
 */
static void pyast_log(int level, const char *file, int line, const char *func, const char *msg)
{
	switch (level) {
	case __LOG_DEBUG:
		if (!DEBUG_ATLEAST(1)) {
			return;
		}
		/* fall through */
	case __LOG_NOTICE:
	case __LOG_WARNING:
	case __LOG_ERROR:
		ast_log(level, file, line, func, "%s\n", msg);
		break;
	default:
		ast_log(__LOG_ERROR, file, line, func, "(invalid log level %d) %s\n", level, msg);
	}
}

static void pyast_verbose(int level, const char *file, int line, const char *func, const char *msg)
{
	if (level < 0) {
		level = 0;
	}
	if (VERBOSITY_ATLEAST(level)) {
		__ast_verbose(file, line, func, level, "%s\n", msg);
	}
}

/*!
 * \brief Copy the channel's identity under its lock, every field whole, into the per-thread
 * result buffer as "name\0uniqueid\0linkedid\0context\0exten\0priority\0tech\0language\0
 * accountcode\0caller_num\0caller_name\0outgoing\0" (the order of channel.py's _FIELDS);
 * outgoing is "1" when Asterisk dialled the channel (AST_FLAG_OUTGOING), else "".
 * \return its length, with *out pointing to it (valid until the next call on this thread);
 *         -1 without a channel or memory.
 */
static ssize_t pyast_chan_info(struct ast_channel *chan, const char **out)
{
	struct ast_str *buf = ast_str_thread_get(&pyast_result_buf, 256);
	const struct ast_channel_tech *tech;
	struct ast_party_caller *caller;
	int res;

	*out = "";
	if (!chan || !buf) {
		return -1;
	}
	ast_channel_lock(chan);
	tech = ast_channel_tech(chan);
	caller = ast_channel_caller(chan);
	/* %c with '\0' writes the separators: ast_str counts them (vsnprintf's length) */
	res = ast_str_set(&buf, 0, "%s%c%s%c%s%c%s%c%s%c%d%c%s%c%s%c%s%c%s%c%s%c%s%c",
		ast_channel_name(chan), 0, ast_channel_uniqueid(chan), 0, ast_channel_linkedid(chan), 0,
		ast_channel_context(chan), 0, ast_channel_exten(chan), 0, ast_channel_priority(chan), 0,
		tech && tech->type ? tech->type : "", 0, ast_channel_language(chan), 0,
		ast_channel_accountcode(chan), 0,
		caller->id.number.valid ? S_OR(caller->id.number.str, "") : "", 0,
		caller->id.name.valid ? S_OR(caller->id.name.str, "") : "", 0,
		ast_test_flag(ast_channel_flags(chan), AST_FLAG_OUTGOING) ? "1" : "", 0);
	ast_channel_unlock(chan);
	if (res < 0) {
		return -1;
	}
	*out = ast_str_buffer(buf);
	return ast_str_strlen(buf);
}

static ssize_t pyast_func_read(struct ast_channel *chan, const char *expr, const char **out);

/*!
 * \brief Read a channel (or, with no channel, a global) variable; a name ending in ')' reads
 * that function, as AMI's Getvar does (and as setting one writes it).
 * \return its length, with *out pointing to a per-thread copy valid until the next call on this
 *         thread; -1 when the variable is not set (or the function read failed).
 */
static ssize_t pyast_getvar(struct ast_channel *chan, const char *name, const char **out)
{
	struct ast_str *buf;
	const char *value;
	ssize_t res = -1;

	if (!ast_strlen_zero(name) && name[strlen(name) - 1] == ')') {
		return pyast_func_read(chan, name, out); /* without the channel lock: it may run Python */
	}
	if (!(buf = ast_str_thread_get(&pyast_result_buf, 256))) {
		return -1;
	}
	if (chan) {
		ast_channel_lock(chan);
	}
	value = pbx_builtin_getvar_helper(chan, name);
	if (value) {
		ast_str_set(&buf, 0, "%s", value);
		res = ast_str_strlen(buf);
	}
	if (chan) {
		ast_channel_unlock(chan);
	}
	*out = ast_str_buffer(buf);
	return res;
}

/*
 * The helpers below that may run Python code again through Asterisk (an application, a function
 * read or write: names ending in ')' are functions) return PYAST_REFUSED when that code was not
 * run for lack of stack; Python raises RecursionError for it (asterisk.checked()).
 */

/*! \brief Set variables in one call; \a sets holds \a len bytes of "name\0value\0" pairs. */
static int pyast_setvars(struct ast_channel *chan, const char *sets, size_t len)
{
	struct pyast_thread *t = reentry_begin();

	apply_sets(chan, sets, len);
	return reentry_end(t, 0);
}

/*! \brief Delete a channel (or global) variable. */
static int pyast_unsetvar(struct ast_channel *chan, const char *name)
{
	struct pyast_thread *t = reentry_begin();

	return reentry_end(t, pbx_builtin_setvar_helper(chan, name, NULL));
}

/*!
 * Hand \a tmp (consumed) to Python through the per-thread result buffer: *out points to the copy,
 * valid until the next call on this thread. \return its length, -1 when \a ok is 0 or no memory.
 */
static ssize_t hand_out(struct ast_str *tmp, int ok, const char **out)
{
	struct ast_str *buf;
	ssize_t res = -1;

	if (ok && (buf = ast_str_thread_get(&pyast_result_buf, 256))) {
		ast_str_set(&buf, 0, "%s", ast_str_buffer(tmp));
		*out = ast_str_buffer(buf);
		res = ast_str_strlen(buf);
	}
	ast_free(tmp);
	return res;
}

/*! \brief Read a dialplan function, e.g. "PJSIP_HEADER(read,X-Foo)"; same result shape as getvar. */
static ssize_t pyast_func_read(struct ast_channel *chan, const char *expr, const char **out)
{
	/* The function may itself be served by Python and use the per-thread buffer: work in a
	 * private string and copy the result at the end. */
	struct ast_str *tmp = ast_str_create(256);
	struct pyast_thread *t;
	int ok;

	*out = "";
	if (!tmp) {
		return -1;
	}
	t = reentry_begin();
	ok = !ast_func_read2(chan, expr, &tmp, 0); /* may reallocate tmp: read it only after */
	return reentry_end(t, hand_out(tmp, ok, out));
}

static int pyast_func_write(struct ast_channel *chan, const char *expr, const char *value)
{
	struct pyast_thread *t = reentry_begin();

	return reentry_end(t, ast_func_write(chan, expr, value));
}

/*! \brief Substitute ${...} expressions with the channel's variables and functions. */
static ssize_t pyast_substitute(struct ast_channel *chan, const char *templ, const char **out)
{
	struct ast_str *tmp = ast_str_create(256);
	struct pyast_thread *t;

	*out = "";
	if (!tmp) {
		return -1;
	}
	t = reentry_begin();
	ast_str_substitute_variables(&tmp, 0, chan, templ);
	return reentry_end(t, hand_out(tmp, 1, out));
}

/*!
 * Hand \a len bytes, NULs included, to Python through the per-thread result buffer: *out points
 * to the copy, valid until the next call on this thread. \return \a len, -1 when out of memory.
 */
static ssize_t hand_out_bytes(const char *data, size_t len, const char **out)
{
	struct ast_str *buf = ast_str_thread_get(&pyast_result_buf, 256);

	if (!buf || ast_str_make_space(&buf, len + 1)) {
		return -1;
	}
	memcpy(ast_str_buffer(buf), data, len);
	ast_str_buffer(buf)[len] = '\0';
	*out = ast_str_buffer(buf);
	return len;
}

/*!
 * Append to \a all (which holds *used bytes) the status byte \a status unless it is 0, then
 * \a n bytes of \a data and a NUL. \return 0, -1 when out of memory.
 */
static int append_value(struct ast_str **all, size_t *used, char status, const char *data, size_t n)
{
	char *at;

	if (ast_str_make_space(all, *used + n + 2)) {
		return -1;
	}
	at = ast_str_buffer(*all) + *used;
	if (status) {
		*at++ = status;
	}
	memcpy(at, data, n);
	at[n] = '\0';
	*used += n + 1 + (status ? 1 : 0);
	return 0;
}

/*!
 * \brief Substitute several templates in one call (values cannot be confused by their content).
 * \param templates \a len bytes of NUL-terminated templates, back to back
 * \return the length of *out: each template's value followed by a NUL (which no value can
 *         hold), in order; -1 when out of memory.
 */
static ssize_t pyast_substitute_each(struct ast_channel *chan, const char *templates, size_t len,
	const char **out)
{
	const char *end = templates + len, *templ;
	struct ast_str *one = ast_str_create(256), *all = ast_str_create(256);
	size_t used = 0;
	ssize_t res = -1;

	struct pyast_thread *t = reentry_begin();

	*out = "";
	if (one && all) {
		for (templ = templates; templ < end; templ += strlen(templ) + 1) {
			/* may run Python functions: the per-thread buffer is written only at the end */
			ast_str_substitute_variables(&one, 0, chan, templ);
			if (append_value(&all, &used, 0, ast_str_buffer(one), ast_str_strlen(one))) {
				break;
			}
		}
		if (templ >= end) {
			res = hand_out_bytes(ast_str_buffer(all), used, out);
		}
	}
	ast_free(one);
	ast_free(all);
	return reentry_end(t, res);
}

/*!
 * \brief Read several dialplan functions in one call, each into a buffer of \a maxlen bytes.
 * A function with a legacy read callback (e.g. PJSIP_HEADER) otherwise gets 4 kB (VAR_BUF_SIZE)
 * and fails on a longer value, which cannot be told from an absent one.
 * \param exprs \a len bytes of NUL-terminated expressions, back to back
 * \return the length of *out: for each expression, '+' and its value, or '-' alone when the read
 *         failed, followed by a NUL; -1 when out of memory.
 */
static ssize_t pyast_func_read_each(struct ast_channel *chan, const char *exprs, size_t len,
	ssize_t maxlen, const char **out)
{
	const char *end = exprs + len, *expr;
	struct ast_str *one = ast_str_create(256), *all = ast_str_create(256);
	size_t used = 0;
	ssize_t res = -1;
	int ok;
	struct pyast_thread *t = reentry_begin();

	*out = "";
	if (one && all) {
		for (expr = exprs; expr < end; expr += strlen(expr) + 1) {
			ok = !ast_func_read2(chan, expr, &one, maxlen); /* may reallocate one */
			if (append_value(&all, &used, ok ? '+' : '-', ok ? ast_str_buffer(one) : "",
					ok ? ast_str_strlen(one) : 0)) {
				break;
			}
		}
		if (expr >= end) {
			res = hand_out_bytes(ast_str_buffer(all), used, out);
		}
	}
	ast_free(one);
	ast_free(all);
	return reentry_end(t, res);
}

/*!
 * \brief Run a dialplan application on the channel, e.g. ("Dial", "PJSIP/100@sopB,30").
 * \note The arguments are passed as given, without ${} substitution.
 * \retval -2 no such application
 * \retval -3 the channel is a dummy (no technology): Asterisk reads functions on one where
 *         there is no call (AMI Getvar without a channel, CDR and CEL templates); applications
 *         would dereference its missing technology
 */
static int pyast_exec(struct ast_channel *chan, const char *app_name, const char *data)
{
	struct ast_app *app;
	struct pyast_thread *t;

	if (!ast_channel_tech(chan)) {
		return -3;
	}
	if (!(app = pbx_findapp(app_name))) {
		return -2;
	}
	t = reentry_begin();
	return reentry_end(t, pbx_exec(chan, app, data));
}

/*!
 * \brief Add (or replace) one priority of a dialplan extension, creating the context if needed.
 * The context and extension belong to the registrar "pbx_python", so 'dialplan reload' keeps them.
 */
static int pyast_add_extension(const char *context, const char *exten, int priority,
	const char *app, const char *data)
{
	if (!ast_context_find_or_create(NULL, NULL, context, "pbx_python")) {
		return -1;
	}
	return ast_add_extension(context, 1, exten, priority, NULL, NULL, app,
		ast_strdup(S_OR(data, "")), ast_free_ptr, "pbx_python");
}

static int pyast_check_hangup(struct ast_channel *chan)
{
	return ast_check_hangup_locked(chan);
}

/* ---- ChannelRef: a channel found by uniqueid or name on each call, from any thread ---- */

#define PYAST_GONE -2 /*!< no such channel, or it has hung up */

/*!
 * Find a channel that is up by uniqueid or name, as AMI's Getvar and Setvar do.
 * \return a reference (ast_channel_unref it), NULL when there is none or it has hung up.
 */
static struct ast_channel *ref_find(const char *id)
{
	struct ast_channel *chan;

	if (ast_strlen_zero(id) || !(chan = ast_channel_get_by_name(id))) {
		return NULL;
	}
	if (ast_check_hangup_locked(chan)) {
		return ast_channel_unref(chan);
	}
	return chan;
}

/*! \brief pyast_getvar() on the channel \a id; \retval PYAST_GONE no such channel up. */
static ssize_t pyast_ref_getvar(const char *id, const char *name, const char **out)
{
	struct ast_channel *chan = ref_find(id);
	ssize_t res;

	*out = "";
	if (!chan) {
		return PYAST_GONE;
	}
	res = pyast_getvar(chan, name, out);
	ast_channel_unref(chan);
	return res;
}

/*! \brief Apply "name\0value\0" pairs on the channel \a id now; \retval PYAST_GONE */
static int pyast_ref_setvars(const char *id, const char *sets, size_t len)
{
	struct ast_channel *chan = ref_find(id);

	if (!chan) {
		return PYAST_GONE;
	}
	apply_sets(chan, sets, len);
	ast_channel_unref(chan);
	return 0;
}

/*! \brief Delete a variable of the channel \a id; \retval PYAST_GONE */
static int pyast_ref_unsetvar(const char *id, const char *name)
{
	struct ast_channel *chan = ref_find(id);

	if (!chan) {
		return PYAST_GONE;
	}
	pbx_builtin_setvar_helper(chan, name, NULL);
	ast_channel_unref(chan);
	return 0;
}

/*! \brief pyast_func_read() on the channel \a id; \retval PYAST_GONE */
static ssize_t pyast_ref_func_read(const char *id, const char *expr, const char **out)
{
	struct ast_channel *chan = ref_find(id);
	ssize_t res;

	*out = "";
	if (!chan) {
		return PYAST_GONE;
	}
	res = pyast_func_read(chan, expr, out);
	ast_channel_unref(chan);
	return res;
}

/*! \brief pyast_substitute() on the channel \a id; \retval PYAST_GONE */
static ssize_t pyast_ref_substitute(const char *id, const char *templ, const char **out)
{
	struct ast_channel *chan = ref_find(id);
	ssize_t res;

	*out = "";
	if (!chan) {
		return PYAST_GONE;
	}
	res = pyast_substitute(chan, templ, out);
	ast_channel_unref(chan);
	return res;
}

/*! \brief 1 when the channel \a id exists and has not hung up, else 0. */
static int pyast_ref_alive(const char *id)
{
	struct ast_channel *chan = ref_find(id);

	if (!chan) {
		return 0;
	}
	ast_channel_unref(chan);
	return 1;
}

/*! \brief Soft hangup of the channel \a id, as AMI's Hangup action; \retval PYAST_GONE */
static int pyast_ref_hangup(const char *id)
{
	struct ast_channel *chan = ref_find(id);

	if (!chan) {
		return PYAST_GONE;
	}
	ast_softhangup(chan, AST_SOFTHANGUP_EXPLICIT);
	ast_channel_unref(chan);
	return 0;
}

/*! \brief How many Asterisk threads hold a Python thread state (for 'python show status'). */
static int pyast_thread_state_count(void)
{
	return ast_atomic_fetchadd_int(&thread_states, 0);
}

/*! \brief Asterisk's configuration and data directories (astetcdir, astdatadir in asterisk.conf). */
static void pyast_directories(const char **config_dir, const char **data_dir)
{
	*config_dir = ast_config_AST_CONFIG_DIR;
	*data_dir = ast_config_AST_DATA_DIR;
}

/*! \brief How Python's stack is set up (docs/DESIGN.md, "Stack depth"). */
static void pyast_stack_info(struct pyast_stack_info *info)
{
	size_t size = ast_thread_stack_size();

#ifdef PYAST_STACK_SWITCH
	size = PYAST_PYSTACK_SIZE;
	info->pystack_kb = PYAST_PYSTACK_SIZE / 1024;
#else
	info->pystack_kb = 0;
#endif
	info->thread_kb = ast_thread_stack_size() / 1024;
	info->unit_bytes = PYAST_UNIT_BYTES;
	info->reserve_kb = size / 8 / 1024;
#ifdef PYAST_UNITS
	info->units = stack_units(size, size);
#else
	info->units = 0;
#endif
#if PY_VERSION_HEX >= 0x030E0000 || PY_VERSION_HEX < 0x030C0000
	info->c_limit = 0;
#elif PY_VERSION_HEX >= 0x030D0000
	info->c_limit = Py_C_RECURSION_LIMIT;
#else
	info->c_limit = C_RECURSION_LIMIT;
#endif
	info->stacks = ast_atomic_fetchadd_int(&pystacks, 0);
	ast_mutex_lock(&pystack_pool_lock);
	info->pooled = pystack_pooled;
	ast_mutex_unlock(&pystack_pool_lock);
	info->created = ast_atomic_fetchadd_int(&pystacks_created, 0);
}

static void pyast_manager_event(const char *event, const char *body)
{
	manager_event(EVENT_FLAG_USER, event, "%s", body);
}

/* ---- configuration ---- */

/*! Flatten pbx_python.conf into items (allocated in one block); NULL if it cannot be read. */
static struct pyast_conf_item *load_config(int *count)
{
	struct ast_flags flags = { 0 };
	struct ast_config *cfg = ast_config_load2(PYAST_CONFIG, "pbx_python", flags);
	struct ast_variable *v;
	struct pyast_conf_item *items = NULL;
	char *cat = NULL;
	int n = 0, i = 0;

	*count = 0;
	if (!cfg || cfg == CONFIG_STATUS_FILEINVALID || cfg == CONFIG_STATUS_FILEMISSING) {
		return NULL;
	}
	while ((cat = ast_category_browse(cfg, cat))) {
		for (v = ast_variable_browse(cfg, cat); v; v = v->next) {
			n++;
		}
	}
	items = ast_calloc(n + 1, sizeof(*items));
	if (!items) {
		ast_config_destroy(cfg);
		return NULL;
	}
	cat = NULL;
	while ((cat = ast_category_browse(cfg, cat))) {
		for (v = ast_variable_browse(cfg, cat); v && i < n; v = v->next, i++) {
			items[i].category = ast_strdup(cat);
			items[i].name = ast_strdup(v->name);
			items[i].value = ast_strdup(v->value);
		}
	}
	ast_config_destroy(cfg);
	*count = i;
	return items;
}

static void free_config(struct pyast_conf_item *items, int count)
{
	int i;

	if (!items) {
		return;
	}
	for (i = 0; i < count; i++) {
		ast_free((char *) items[i].category);
		ast_free((char *) items[i].name);
		ast_free((char *) items[i].value);
	}
	ast_free(items);
}

static const char *config_value(const struct pyast_conf_item *items, int n, const char *cat, const char *name)
{
	int i;

	for (i = 0; i < n; i++) {
		if (!strcasecmp(items[i].category, cat) && !strcasecmp(items[i].name, name)) {
			return items[i].value;
		}
	}
	return NULL;
}

/* ---- interpreter start ---- */

/*!
 * Asterisk opens modules RTLD_LOCAL, which hides libpython from Python's own extension modules
 * (_cffi_backend, _ctypes...). Re-open the already mapped libpython with RTLD_GLOBAL.
 */
static int promote_libpython(void)
{
	Dl_info info;

	if (!dladdr((void *) &Py_InitializeFromConfig, &info) || !info.dli_fname) {
		ast_log(LOG_ERROR, "Cannot locate libpython in memory\n");
		return -1;
	}
	if (!dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
		ast_log(LOG_ERROR, "Cannot make %s global: %s\n", info.dli_fname, dlerror());
		return -1;
	}
	return 0;
}

/* ---- Python's arenas: kept for reuse instead of unmapped at once ---- */

/*
 * CPython maps memory for its small-object arenas and for each thread state's frame stack
 * ("data stack", 16 KB to start with) through its arena allocator, and unmaps it when freed.
 * Every channel is a new Asterisk thread with a new thread state: without this, each one's
 * first Python call mapped a data stack, took a page fault on each of its pages, and unmapped
 * it when the thread ended (docs/BENCHMARKS.md, "First call on a new thread"). This allocator
 * keeps up to PYAST_ARENA_KEEP freed blocks (of PYAST_ARENA_KEEP_MAX bytes or less) for the
 * next request of the same size; anything else goes to the default allocator.
 */
#define PYAST_ARENA_KEEP 64
#define PYAST_ARENA_KEEP_MAX (64 * 1024)

static PyObjectArenaAllocator arena_default;
static struct {
	void *ptr;
	size_t size;
} arena_kept[PYAST_ARENA_KEEP];
static int arena_nkept;
AST_MUTEX_DEFINE_STATIC(arena_lock); /* called with the GIL held, but not every caller is known */

static void *arena_alloc(void *ctx, size_t size)
{
	void *ptr = NULL;
	int i;

	if (size <= PYAST_ARENA_KEEP_MAX) {
		ast_mutex_lock(&arena_lock);
		for (i = arena_nkept - 1; i >= 0; i--) {
			if (arena_kept[i].size == size) {
				ptr = arena_kept[i].ptr;
				arena_kept[i] = arena_kept[--arena_nkept];
				break;
			}
		}
		ast_mutex_unlock(&arena_lock);
	}
	return ptr ? ptr : arena_default.alloc(arena_default.ctx, size);
}

static void arena_free(void *ctx, void *ptr, size_t size)
{
	if (ptr && size <= PYAST_ARENA_KEEP_MAX) {
		ast_mutex_lock(&arena_lock);
		if (arena_nkept < PYAST_ARENA_KEEP) {
			arena_kept[arena_nkept].ptr = ptr;
			arena_kept[arena_nkept++].size = size;
			ptr = NULL;
		}
		ast_mutex_unlock(&arena_lock);
	}
	if (ptr) {
		arena_default.free(arena_default.ctx, ptr, size);
	}
}

/*! Before Python starts: the caching arena allocator in front of CPython's own. */
static void arena_install(void)
{
	PyObjectArenaAllocator mine = { .ctx = NULL, .alloc = arena_alloc, .free = arena_free };

	PyObject_GetArenaAllocator(&arena_default);
	PyObject_SetArenaAllocator(&mine);
}

static int start_python(const char *executable)
{
	PyConfig config;
	PyStatus status;

	if (Py_IsInitialized()) {
		return 0;
	}
	PyConfig_InitPythonConfig(&config);
	config.install_signal_handlers = 0;
	config.parse_argv = 0;
	config.configure_c_stdio = 0;
	config.buffered_stdio = 0;
	if (!ast_strlen_zero(executable)) {
		/* A virtual environment's python: sys.prefix and site-packages follow its pyvenv.cfg */
		status = PyConfig_SetBytesString(&config, &config.executable, executable);
		if (PyStatus_Exception(status)) {
			goto failed;
		}
	}
	arena_install();
	status = Py_InitializeFromConfig(&config);
	if (PyStatus_Exception(status)) {
		goto failed;
	}
	PyConfig_Clear(&config);
	pyast_gil_handoff_init();
	PyEval_SaveThread(); /* cffi expects to take the GIL itself */
	return 0;

failed:
	ast_log(LOG_ERROR, "Python could not start (python = '%s'): %s%s%s\n", S_OR(executable, "(built-in)"),
		S_OR(status.func, ""), status.func ? ": " : "", S_OR(status.err_msg, "unknown error"));
	PyConfig_Clear(&config);
	return -1;
}

/*!
 * Import the Python runtime once ourselves before cffi does, so that a failure (package not
 * installed for this interpreter, syntax error...) reaches the Asterisk log with its traceback
 * instead of Asterisk's stderr.
 */
static int check_runtime_importable(void)
{
	PyGILState_STATE gil = PyGILState_Ensure();
	PyObject *mod = PyImport_ImportModule("pbx_python._runtime");

	if (!mod) {
		log_python_exception("Cannot import pbx_python._runtime");
	}
	Py_XDECREF(mod);
	PyGILState_Release(gil);
	return mod ? 0 : -1;
}

/*! Take references to the runtime's entry tables (dicts it keeps up to date on every load). */
static int bind_entry_tables(void)
{
	PyGILState_STATE gil = PyGILState_Ensure();
	PyObject *mod = PyImport_ImportModule("pbx_python._runtime");
	int i, res = 0;

	for (i = 0; mod && i < (int) ARRAY_LEN(entry_tables); i++) {
		PyObject *table = PyObject_GetAttrString(mod, entry_table_names[i]);

		if (!table || !PyDict_Check(table)) {
			Py_XDECREF(table);
			res = -1;
			break;
		}
		Py_XSETREF(entry_tables[i], table);
	}
	if (!mod || res) {
		if (PyErr_Occurred()) {
			log_python_exception("pbx_python: cannot bind the runtime's entry tables");
		} else {
			ast_log(LOG_ERROR, "pbx_python._runtime has no dict %s\n", entry_table_names[i]);
		}
		res = -1;
	}
	Py_XDECREF(mod);
	PyGILState_Release(gil);
	return res;
}

/* ---- the dialplan switch: switch => Python/<name> (docs/DESIGN.md, "Switch") ---- */

/*
 * Asterisk asks a switch whether an extension exists (exists, canmatch, matchmore) with the
 * contexts locked, often many times per call (overlap dialling, Goto and Gosub checks, the PBX
 * loop itself), and sometimes without a channel. These lookups never run Python: they match
 * against an immutable table that Python hands over in one call at each successful (re)load,
 * sorted here with Asterisk's own ast_extension_cmp and matched with ast_extension_match and
 * ast_extension_close, so the precedence is exactly the dialplan's. A reload builds a new table and
 * swaps it in (an ao2 global object): a lookup holds a reference to the one it started with, so it
 * sees the old table or the new one, never a mix. Only exec (priority 1 of an extension, run after
 * Asterisk has unlocked the contexts) calls Python, through the same entry path as applications.
 */

/*! One Python switch: its name and its extensions/patterns in match order. */
struct pyast_sw {
	const char *name;
	const char **patterns;
	int n;
	int lookups;                /*!< exists/canmatch/matchmore calls since this table was loaded */
};

/*! The table of every switch: an immutable ao2 object (lookups counted atomically apart). */
struct pyast_sw_table {
	struct pyast_sw *sws;
	int n;
	char *blob;                 /*!< the strings, as Python packed them */
	struct ao2_container *warned; /*!< undeclared switch names already warned about */
};

static AO2_GLOBAL_OBJ_STATIC(switch_table);

static void sw_table_destroy(void *obj)
{
	struct pyast_sw_table *tab = obj;
	int i;

	for (i = 0; tab->sws && i < tab->n; i++) {
		ast_free(tab->sws[i].patterns);
	}
	ast_free(tab->sws);
	ast_free(tab->blob);
	ao2_cleanup(tab->warned);
}

static int sw_pattern_cmp(const void *a, const void *b)
{
	return ast_extension_cmp(*(const char *const *) a, *(const char *const *) b);
}

/*!
 * \brief Replace the switch table. \a table holds \a len bytes: per switch, its name, its
 * patterns, then an empty string, each NUL-terminated (pbx_python.switches.pack()).
 * \retval 0 in service now
 * \retval -1 no memory or a malformed table: the previous table stays
 */
static int pyast_switch_load(const char *table, size_t len)
{
	struct pyast_sw_table *tab;
	const char *end, *c;
	int nsw = 0, i, k;

	if (len && table[len - 1] != '\0') {
		return -1;
	}
	tab = ao2_alloc_options(sizeof(*tab), sw_table_destroy, AO2_ALLOC_OPT_LOCK_NOLOCK);
	if (!tab) {
		return -1;
	}
	tab->warned = ast_str_container_alloc(7);
	tab->blob = ast_malloc(len + 1);
	if (!tab->warned || !tab->blob) {
		ao2_ref(tab, -1);
		return -1;
	}
	memcpy(tab->blob, table, len);
	tab->blob[len] = '\0';
	end = tab->blob + len;
	/* count the switches: a name starts each one, an empty string ends it */
	for (c = tab->blob; c < end; ) {
		nsw++;
		c += strlen(c) + 1;
		while (c < end && *c) {
			c += strlen(c) + 1;
		}
		c++;
	}
	if (nsw && !(tab->sws = ast_calloc(nsw, sizeof(*tab->sws)))) {
		ao2_ref(tab, -1);
		return -1;
	}
	tab->n = nsw;
	for (c = tab->blob, i = 0; c < end && i < nsw; i++) {
		const char *first;

		tab->sws[i].name = c;
		c += strlen(c) + 1;
		for (first = c; c < end && *c; c += strlen(c) + 1) {
			tab->sws[i].n++;
		}
		c++;
		if (tab->sws[i].n && !(tab->sws[i].patterns = ast_calloc(tab->sws[i].n, sizeof(char *)))) {
			ao2_ref(tab, -1);
			return -1;
		}
		for (k = 0; k < tab->sws[i].n; k++, first += strlen(first) + 1) {
			tab->sws[i].patterns[k] = first;
		}
		qsort(tab->sws[i].patterns, tab->sws[i].n, sizeof(char *), sw_pattern_cmp);
	}
	ao2_global_obj_replace_unref(switch_table, tab);
	ao2_ref(tab, -1);
	return 0;
}

/*!
 * \brief The table in service, for 'python show switches': per switch "name\0lookups\0" then
 * its patterns in match order, each followed by a NUL, then a NUL.
 * \return the length of *out (per-thread buffer), 0 when there is no table, -1 no memory.
 */
static ssize_t pyast_switch_dump(const char **out)
{
	struct pyast_sw_table *tab = ao2_global_obj_ref(switch_table);
	struct ast_str *all = ast_str_create(256);
	size_t used = 0;
	ssize_t res = -1;
	char count[32];
	int i, k, failed = 0;

	*out = "";
	if (!all) {
		ao2_cleanup(tab);
		return -1;
	}
	for (i = 0; tab && i < tab->n && !failed; i++) {
		snprintf(count, sizeof(count), "%d", ast_atomic_fetchadd_int(&tab->sws[i].lookups, 0));
		failed |= append_value(&all, &used, 0, tab->sws[i].name, strlen(tab->sws[i].name));
		failed |= append_value(&all, &used, 0, count, strlen(count));
		for (k = 0; k < tab->sws[i].n && !failed; k++) {
			failed |= append_value(&all, &used, 0, tab->sws[i].patterns[k], strlen(tab->sws[i].patterns[k]));
		}
		failed |= append_value(&all, &used, 0, "", 0);
	}
	if (!failed) {
		res = used ? hand_out_bytes(ast_str_buffer(all), used, out) : 0;
	}
	ast_free(all);
	ao2_cleanup(tab);
	return res;
}

/*!
 * The pattern of switch \a name that Asterisk would pick for \a exten with \a action
 * (E_MATCH: exists/exec, E_CANMATCH, E_MATCHMORE), as pbx_lua and the dialplan match: the first
 * in ast_extension_cmp order. NULL: none, or the switch is not declared (warned once per load).
 * No Python, no blocking, no channel: called with the contexts locked.
 */
static const char *sw_find(struct pyast_sw_table *tab, const char *name, const char *context,
	const char *exten, int action)
{
	struct pyast_sw *sw = NULL;
	int i, match;

	for (i = 0; i < tab->n; i++) {
		if (!strcmp(tab->sws[i].name, name)) {
			sw = &tab->sws[i];
			break;
		}
	}
	if (!sw) {
		char *seen;
		int warn;

		ao2_lock(tab->warned);
		seen = ao2_find(tab->warned, name, OBJ_SEARCH_KEY | OBJ_NOLOCK);
		warn = !seen && !ast_str_container_add(tab->warned, name);
		ao2_unlock(tab->warned);
		ao2_cleanup(seen);
		if (warn) {
			ast_log(LOG_WARNING, "switch => Python/%s (context %s): no Python switch named '%s' "
				"is declared; its extensions do not exist (see 'python show switches')\n",
				name, S_OR(context, ""), name);
		}
		return NULL;
	}
	ast_atomic_fetchadd_int(&sw->lookups, +1);
	for (i = 0; i < sw->n; i++) {
		match = action == E_MATCH ? ast_extension_match(sw->patterns[i], exten)
			: ast_extension_close(sw->patterns[i], exten, action);
		if (!match) {
			continue;
		}
		if (action == E_MATCHMORE && match == 2) {
			/* a pattern ending in '!' matches already: no more digits are needed (final) */
			return NULL;
		}
		return sw->patterns[i];
	}
	return NULL;
}

/*! exists/canmatch/matchmore: the table only. Only priority 1 exists (the body). */
static int sw_lookup(const char *context, const char *exten, int priority, const char *data, int action)
{
	struct pyast_sw_table *tab;
	int found;

	if (priority != 1 || ast_strlen_zero(data) || !exten) {
		return 0;
	}
	if (!(tab = ao2_global_obj_ref(switch_table))) {
		return 0;
	}
	found = sw_find(tab, data, context, exten, action) != NULL;
	ao2_ref(tab, -1);
	return found;
}

static int sw_exists(struct ast_channel *chan, const char *context, const char *exten, int priority,
	const char *callerid, const char *data)
{
	return sw_lookup(context, exten, priority, data, E_MATCH);
}

static int sw_canmatch(struct ast_channel *chan, const char *context, const char *exten, int priority,
	const char *callerid, const char *data)
{
	return sw_lookup(context, exten, priority, data, E_CANMATCH);
}

static int sw_matchmore(struct ast_channel *chan, const char *context, const char *exten, int priority,
	const char *callerid, const char *data)
{
	return sw_lookup(context, exten, priority, data, E_MATCHMORE);
}

/*!
 * exec: run the extension's body in Python, entry(call, chan, exten, context), through the same
 * path as an application (Python's stack, the GIL hand-off, errors logged and mapped to -1).
 * Asterisk calls it with the contexts unlocked. \return the body's result: 0 the PBX goes on
 * (priority 2 does not exist unless a Goto moved the channel), -1 hang up.
 */
static int sw_exec(struct ast_channel *chan, const char *context, const char *exten, int priority,
	const char *callerid, const char *data)
{
	struct pyast_sw_table *tab;
	const char *pattern = NULL;
	char *key = NULL, *argv[2];
	struct pyast_call call = { .chan = chan, .data = "" };
	struct entry_job ej = {
		.job = { .what = kind_names[PYAST_SWITCH], .run = entry_run },
		.kind = PYAST_SWITCH, .call = &call, .res = -1,
	};

	if (!chan || shutting_down || !python_started || ast_strlen_zero(data) || !exten) {
		return -1;
	}
	if ((tab = ao2_global_obj_ref(switch_table))) {
		pattern = priority == 1 ? sw_find(tab, data, context, exten, E_MATCH) : NULL;
		if (pattern && ast_asprintf(&key, "%s/%s", data, pattern) < 0) {
			key = NULL;
		}
		ao2_ref(tab, -1);
	}
	if (!key) {
		ast_log(LOG_WARNING, "Python switch %s has no extension %s, priority %d (context %s): "
			"the table changed since the lookup?\n", data, exten, priority, S_OR(context, ""));
		return -1;
	}
	ast_verb(3, "Executing [%s@%s:%d] Python switch %s, extension %s\n", exten, S_OR(context, ""),
		priority, data, key + strlen(data) + 1);
	argv[0] = (char *) exten;
	argv[1] = (char *) S_OR(context, "");
	call.name = key;
	call.argc = 2;
	call.argv = argv;
	ej.key = key;
	ej.job.name = key;
	python_call(&ej.job);
	if (ej.job.refused) {
		pbx_builtin_setvar_helper(chan, "PYTHON_ERROR",
			"RecursionError: maximum recursion depth exceeded (too little C stack left to run it)");
	}
	if (ej.out.sets) {
		apply_sets(chan, ej.out.sets, ej.out.setslen);
		ast_free(ej.out.sets);
	}
	ast_free(key);
	return ej.res;
}

static struct ast_switch python_switch = {
	.name = "Python",
	.description = "Python dialplan switch (pbx_python): switch => Python/<name>",
	.exists = sw_exists,
	.canmatch = sw_canmatch,
	.exec = sw_exec,
	.matchmore = sw_matchmore,
};
static int switch_registered;

/* ---- metrics (res_prometheus) ---- */

/*! A scrape's call into Python, as a job. */
struct metrics_job {
	struct pyast_job job;       /* first member: metrics_run() casts back */
	struct pyast_out out;
};

static void metrics_run(struct pyast_job *job)
{
	struct metrics_job *mj = (struct metrics_job *) job;

	pyast_on_metrics(&mj->out);
}

/*!
 * res_prometheus scrape callback (HTTP thread, scrape lock held): append the text Python renders
 * for every metric it holds. One call into Python per scrape; Python takes no Asterisk lock.
 */
static void metrics_scrape(struct ast_str **output)
{
	struct metrics_job mj = {
		.job = { .what = "Metrics", .name = "scrape", .run = metrics_run },
	};

	if (shutting_down || !python_started) {
		return;
	}
	python_call(&mj.job);
	if (mj.out.text) {
		ast_str_append(output, 0, "%s", mj.out.text);
	}
}

static struct prometheus_callback metrics_callback = {
	.name = "pbx_python",
	.callback_fn = metrics_scrape,
};

/*
 * res_prometheus is optional: this module must load (dlopen RTLD_NOW) whether or not it is built
 * or loaded, so its API is not linked but looked up when we start. The loader dlopens every module
 * before it starts any, so a weak reference would be resolved too early (before res_prometheus is
 * mapped); at start it is running if it is loaded at all (.optional_modules: started before us, and
 * referenced by us so it cannot be unloaded first) and its symbols are global
 * (AST_MODFLAG_GLOBAL_SYMBOLS).
 */
static void (*metrics_unregister_fn)(struct prometheus_callback *callback);

/*! Register the scrape callback when res_prometheus is running. */
static void metrics_register(void)
{
	int (*register_fn)(struct prometheus_callback *callback);

	if (!ast_module_check("res_prometheus.so")) {
		ast_verb(3, "pbx_python: res_prometheus is not loaded: metrics are not exposed\n");
		return;
	}
	register_fn = (int (*)(struct prometheus_callback *)) dlsym(RTLD_DEFAULT, "prometheus_callback_register");
	metrics_unregister_fn = (void (*)(struct prometheus_callback *)) dlsym(RTLD_DEFAULT,
		"prometheus_callback_unregister");
	if (!register_fn || !metrics_unregister_fn || register_fn(&metrics_callback)) {
		ast_log(LOG_WARNING, "pbx_python: cannot register the metrics callback with res_prometheus\n");
		metrics_unregister_fn = NULL;
		return;
	}
	ast_verb(3, "pbx_python: metrics exposed through res_prometheus\n");
}

static void metrics_unregister(void)
{
	/* checked: once res_prometheus has unloaded, its callback list is gone */
	if (metrics_unregister_fn && ast_module_check("res_prometheus.so")) {
		metrics_unregister_fn(&metrics_callback);
	}
	metrics_unregister_fn = NULL;
}

/* ---- module callbacks ---- */

/*! Loading the configured Python modules as a job: their code runs on Python's stack too. */
struct load_job {
	struct pyast_job job;       /* first member: load_run() casts back */
	const struct pyast_conf_item *items;
	int n;
	int reload;
	int res;
};

static void load_run(struct pyast_job *job)
{
	struct load_job *lj = (struct load_job *) job;

	lj->res = pyast_on_load(lj->items, lj->n, lj->reload);
}

/*! Load (or reload) the Python modules configured in \a items. \return 0, -1 on failure. */
static int load_python_modules(const struct pyast_conf_item *items, int n, int reload)
{
	struct load_job lj = {
		.job = { .what = "Loading", .name = "the Python modules", .run = load_run },
		.items = items, .n = n, .reload = reload, .res = -1,
	};

	python_call(&lj.job);
	return lj.res;
}

static int load_module(void)
{
	struct pyast_conf_item *items;
	const char *executable;
	int n;

	items = load_config(&n);
	if (!items) {
		ast_log(LOG_ERROR, "Cannot read %s: pbx_python will not load (see pbx_python.conf.sample)\n",
			PYAST_CONFIG);
		return AST_MODULE_LOAD_DECLINE;
	}
	executable = S_OR(config_value(items, n, "general", "python"), PYAST_DEFAULT_PYTHON);
	if (!ast_strlen_zero(executable) && access(executable, X_OK)) {
		ast_log(LOG_ERROR, "%s: python = %s: %s: pbx_python will not load\n", PYAST_CONFIG,
			executable, strerror(errno));
		free_config(items, n);
		return AST_MODULE_LOAD_DECLINE;
	}
	if (promote_libpython() || start_python(executable)) {
		free_config(items, n);
		return AST_MODULE_LOAD_DECLINE;
	}
	if (check_runtime_importable()) {
		ast_log(LOG_ERROR, "pbx_python will not load: install the pbx_python package for %s "
			"(pip install pbx_python, from the project's checkout)\n", S_OR(executable, "the embedded Python"));
		free_config(items, n);
		return AST_MODULE_LOAD_DECLINE;
	}
	if (cffi_start_python()) {
		ast_log(LOG_ERROR, "The pbx_python runtime could not start inside Python (python = '%s'); "
			"is the pbx_python package installed for that interpreter? Details were printed on "
			"Asterisk's stderr.\n", S_OR(executable, "(built-in)"));
		free_config(items, n);
		return AST_MODULE_LOAD_DECLINE;
	}
	if (bind_entry_tables()) {
		free_config(items, n);
		return AST_MODULE_LOAD_DECLINE;
	}
	python_started = 1;
	gil_spin_configure(config_value(items, n, "general", "gil_spin"));
	/* Failures in the configured Python modules are logged by Python; the module stays loaded so
	 * that fixing the code and 'module reload pbx_python.so' is enough. */
	load_python_modules(items, n, 0);
	free_config(items, n);
	/* after the first load: a lookup finds the table of the modules that loaded */
	if (ast_register_switch(&python_switch)) {
		ast_log(LOG_WARNING, "pbx_python: cannot register the dialplan switch 'Python' "
			"(another module registered one by that name)\n");
	} else {
		switch_registered = 1;
	}
	metrics_register();
	return AST_MODULE_LOAD_SUCCESS;
}

static int reload_module(void)
{
	struct pyast_conf_item *items;
	int n, res;

	if (!python_started) {
		return -1;
	}
	items = load_config(&n);
	if (!items) {
		ast_log(LOG_ERROR, "Cannot read %s: reload skipped, the running Python code stays\n", PYAST_CONFIG);
		return -1;
	}
	res = load_python_modules(items, n, 1);
	if (!res) { /* a refused configuration keeps everything as it was */
		gil_spin_configure(config_value(items, n, "general", "gil_spin"));
	}
	free_config(items, n);
	return res ? -1 : 0;
}

static int unload_module(void)
{
	struct pyast_app *app;
	struct pyast_func *pf;
	struct pyast_cli *pc;

	if (!ast_shutdown_final()) {
		ast_log(LOG_ERROR, "pbx_python cannot be unloaded while Asterisk runs: an embedded Python "
			"interpreter cannot be shut down safely. Use 'module reload pbx_python.so' to reload "
			"the Python code, or restart Asterisk.\n");
		return -1;
	}
	shutting_down = 1;
	metrics_unregister();
	if (switch_registered) {
		ast_unregister_switch(&python_switch);
		switch_registered = 0;
	}
	ao2_global_obj_release(switch_table);
	if (python_started) {
		pyast_on_shutdown();
	}
	AST_LIST_LOCK(&registered_clis);
	while ((pc = AST_LIST_REMOVE_HEAD(&registered_clis, list))) {
		ast_cli_unregister(&pc->e);
		/* the entry itself stays allocated: the process is ending */
	}
	AST_LIST_UNLOCK(&registered_clis);
	AST_LIST_LOCK(&registered_apps);
	while ((app = AST_LIST_REMOVE_HEAD(&registered_apps, list))) {
		ast_unregister_application(app->name);
		ast_free(app);
	}
	AST_LIST_UNLOCK(&registered_apps);
	AST_LIST_LOCK(&registered_funcs);
	while ((pf = AST_LIST_REMOVE_HEAD(&registered_funcs, list))) {
		ast_custom_function_unregister(pf->acf);
	}
	AST_LIST_UNLOCK(&registered_funcs);
	return 0;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_LOAD_ORDER, "Python dialplan applications and functions",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
	.load_pri = AST_MODPRI_DEFAULT,
	.optional_modules = "res_prometheus",
);
