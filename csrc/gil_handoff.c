/*
 * pbx_python: how an Asterisk thread waits for the GIL (docs/BENCHMARKS.md, "Concurrency").
 *
 * An entry holds the GIL for a few microseconds. CPython's own wait for a GIL held by another
 * thread is to sleep at once on a condition variable; with many channels calling Python, most
 * entries then cost a futex wait, a wake-up system call in the thread that drops the GIL, two
 * context switches, and contention on the GIL's internal mutex among the threads woken together.
 * That is more than the entry itself, and it made Python's throughput fall as channels were
 * added. Instead, when the GIL is held, an entry queues here (a mutex in front of the GIL): the
 * first in line spins, for at most gil_spin microseconds, until the GIL is released, then takes
 * it; the others wait on the queue's mutex, not on the GIL. So one thread at a time waits for the
 * GIL, ready to take it the moment it is dropped, and the next one wakes while the GIL holder
 * runs. The queue is held only while waiting for the GIL, never while Python runs, so nothing
 * that Python code does (a lock, a sleep, I/O, a call into Asterisk) can block on it.
 *
 * Reading the GIL's "locked" flag needs CPython's internal structures, whose layout differs
 * between versions: this file alone is compiled with Py_BUILD_CORE_MODULE against the internal
 * headers of the Python it is built for. The flag is only read (relaxed), never written. It does
 * not use Asterisk's headers (Asterisk forbids plain pthread mutexes, and this one must spin
 * before it sleeps, which Asterisk's recursive mutexes do not).
 */
#define Py_BUILD_CORE_MODULE 1
#define _GNU_SOURCE 1
#include <Python.h>
#include <pthread.h>
#include <time.h>

#if defined(Py_GIL_DISABLED)
/* free-threaded build: there is no GIL to wait for */
static const int *find_locked_flag(void)
{
	return NULL;
}
#elif PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_interp.h"
#include "internal/pycore_gil.h"

static const int *find_locked_flag(void)
{
	PyInterpreterState *interp = PyInterpreterState_Main();

	return interp && interp->ceval.gil ? (const int *) &interp->ceval.gil->locked : NULL;
}
#elif PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_runtime.h"

static const int *find_locked_flag(void)
{
	return (const int *) &_PyRuntime.ceval.gil.locked;
}
#else
static const int *find_locked_flag(void)
{
	return NULL;
}
#endif

#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
static pthread_mutex_t queue = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
#else
static pthread_mutex_t queue = PTHREAD_MUTEX_INITIALIZER;
#endif
static const int *gil_locked;
static long spin_ns;

/*! Once Python runs: find the GIL's flag. */
void pyast_gil_handoff_init(void)
{
	gil_locked = find_locked_flag();
}

/*! How long the first in line spins (0: no queue, no spin: CPython's own wait). */
void pyast_gil_handoff_spin(long ns)
{
	__atomic_store_n(&spin_ns, ns, __ATOMIC_RELAXED);
}

static inline int gil_held(void)
{
	return __atomic_load_n(gil_locked, __ATOMIC_RELAXED);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*!
 * Before an entry takes the GIL (outside Python, without the GIL). \return 1 when the caller
 * is in the queue and must call pyast_gil_handoff_leave() as soon as it has the GIL; 0 when the
 * GIL looked free (or the queue is off): take it at once.
 */
int pyast_gil_handoff_enter(void)
{
	long budget = __atomic_load_n(&spin_ns, __ATOMIC_RELAXED);
	struct timespec start, now;
	int i;

	if (!gil_locked || !budget || !gil_held()) {
		return 0;
	}
	pthread_mutex_lock(&queue);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (gil_held()) {
		for (i = 0; i < 64 && gil_held(); i++) {
			cpu_relax();
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) > budget) {
			break; /* a long holder: sleep on the GIL as CPython does, still first in line */
		}
	}
	return 1;
}

/*! The GIL is taken: the next in line may wait for its release. */
void pyast_gil_handoff_leave(void)
{
	pthread_mutex_unlock(&queue);
}
