/* fl_parallel_for: run fn(t, arg) for t in [0, n) on up to `threads` threads.
 *
 * On POSIX systems a small pool of pthreads does it, instead of an OpenMP
 * team, for two reasons measured inside training loops:
 *  - the caller never waits for a thread that has not started: tasks are
 *    claimed one at a time, and a helper that wakes late finds none left.
 *    An OpenMP team's closing barrier waits for every thread, so on a busy
 *    machine each call could wait for a time slice of the scheduler;
 *  - an idle helper polls for 1 ms and then sleeps, where GNU OpenMP's
 *    spins for GOMP_SPINCOUNT iterations (up to tens of milliseconds on
 *    cores with a slow pause), taking a core from other work.
 * Which thread runs which task never changes a result: tasks write disjoint
 * outputs, fixed by the shape.  Elsewhere (Windows) it is an OpenMP loop, and
 * without OpenMP a plain loop.
 */
#ifndef FL_POOL_H
#define FL_POOL_H

#include <Python.h>

typedef void (*fl_task)(Py_ssize_t t, void *arg);

#if defined(_WIN32) || defined(FL_SERIAL)

#ifdef _OPENMP
#define FL_POOL_KIND "openmp"
#else
#define FL_POOL_KIND "serial"
#endif

static void fl_parallel_for(Py_ssize_t n, int threads, fl_task fn, void *arg)
{
    Py_ssize_t t;
#ifdef _OPENMP
    if (threads > 1) {
        #pragma omp parallel for schedule(dynamic) num_threads(threads)
        for (t = 0; t < n; t++)
            fn(t, arg);
        return;
    }
#endif
    (void)threads;
    for (t = 0; t < n; t++)
        fn(t, arg);
}

static void fl_pool_init(void) {}

#else /* POSIX: the pool */

#define FL_POOL_KIND "pthreads"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* How long an idle helper polls for the next job before it sleeps: long
 * enough to outlast the NumPy work between two calls of a training step (a
 * helper woken from sleep came too late to share the next call on the 2-core
 * machines measured), far shorter than GNU OpenMP's spin of milliseconds. */
#define FL_SPIN_NS 1000000
/* Pauses between two readings of the clock while polling. */
#define FL_SPIN_CHECK 64
#define FL_MAX_HELPERS 255

static pthread_mutex_t fl_lock = PTHREAD_MUTEX_INITIALIZER;  /* the fields below */
static pthread_cond_t fl_wake = PTHREAD_COND_INITIALIZER;      /* a new job */
static pthread_cond_t fl_finished = PTHREAD_COND_INITIALIZER;  /* its last task done */
static int fl_helpers = 0;            /* helper threads started */
static int fl_sleeping = 0;           /* of them, waiting on fl_wake */
static int fl_busy = 0;               /* a job is running (another caller runs serially) */
static atomic_uint fl_generation;     /* bumped for each job */
static fl_task fl_fn;
static void *fl_arg;
static Py_ssize_t fl_n;
static int fl_seats;                  /* helpers that may still join the job */
/* (generation << 32) | next task: a claim is for one job only, so a helper
 * that wakes after its job ended can never take a task of the next one. */
static _Atomic uint64_t fl_claim;
static atomic_llong fl_done;          /* tasks of the current job finished */

static int64_t fl_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void fl_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Claim and run tasks of job `generation` until none is left. */
static void fl_work(unsigned generation, fl_task fn, void *arg, Py_ssize_t n)
{
    for (;;) {
        uint64_t claim = atomic_load(&fl_claim);
        if ((unsigned)(claim >> 32) != generation || (Py_ssize_t)(claim & 0xffffffffu) >= n)
            return;
        if (atomic_compare_exchange_weak(&fl_claim, &claim, claim + 1)) {
            fn((Py_ssize_t)(claim & 0xffffffffu), arg);
            if (atomic_fetch_add(&fl_done, 1) == n - 1) {
                pthread_mutex_lock(&fl_lock);
                pthread_cond_broadcast(&fl_finished);
                pthread_mutex_unlock(&fl_lock);
            }
        }
    }
}

static void *fl_helper(void *unused)
{
    unsigned seen = atomic_load(&fl_generation);
    (void)unused;
    for (;;) {
        unsigned generation;
        fl_task fn;
        void *arg;
        Py_ssize_t n;
        int spin, join;
        int64_t until = fl_now_ns() + FL_SPIN_NS;
        for (spin = 1; atomic_load(&fl_generation) == seen; spin++) {
            fl_pause();
            if (spin % FL_SPIN_CHECK == 0 && fl_now_ns() > until)
                break;
        }
        pthread_mutex_lock(&fl_lock);
        while (atomic_load(&fl_generation) == seen) {
            fl_sleeping++;
            pthread_cond_wait(&fl_wake, &fl_lock);
            fl_sleeping--;
        }
        seen = generation = atomic_load(&fl_generation);
        fn = fl_fn;
        arg = fl_arg;
        n = fl_n;
        join = fl_seats-- > 0;
        pthread_mutex_unlock(&fl_lock);
        if (join)
            fl_work(generation, fn, arg, n);
    }
    return NULL;
}

static void fl_parallel_for(Py_ssize_t n, int threads, fl_task fn, void *arg)
{
    unsigned generation;
    Py_ssize_t t;
    int wanted = threads - 1 < FL_MAX_HELPERS ? threads - 1 : FL_MAX_HELPERS;
    if (wanted > n - 1)
        wanted = (int)(n - 1);
    if (n >= ((Py_ssize_t)1 << 31))
        wanted = 0;  /* claims count tasks in 32 bits; no caller has this many */
    pthread_mutex_lock(&fl_lock);
    if (wanted <= 0 || fl_busy) {  /* one thread, or the pool is another caller's */
        pthread_mutex_unlock(&fl_lock);
        for (t = 0; t < n; t++)
            fn(t, arg);
        return;
    }
    fl_busy = 1;
    while (fl_helpers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, fl_helper, NULL) != 0) {
            pthread_attr_destroy(&attr);
            break;  /* fewer helpers: the caller takes more tasks */
        }
        pthread_attr_destroy(&attr);
        fl_helpers++;
    }
    generation = atomic_load(&fl_generation) + 1;
    fl_fn = fn;
    fl_arg = arg;
    fl_n = n;
    atomic_store(&fl_done, 0);
    fl_seats = wanted;
    atomic_store(&fl_claim, (uint64_t)generation << 32);
    atomic_store(&fl_generation, generation);
    if (fl_sleeping)
        pthread_cond_broadcast(&fl_wake);
    pthread_mutex_unlock(&fl_lock);
    fl_work(generation, fn, arg, n);
    /* Only tasks a helper has claimed are left: wait for them to finish. */
    for (t = 0; t < 100 * FL_SPIN_CHECK && atomic_load(&fl_done) < n; t++)
        fl_pause();
    pthread_mutex_lock(&fl_lock);
    while (atomic_load(&fl_done) < n)
        pthread_cond_wait(&fl_finished, &fl_lock);
    fl_busy = 0;
    pthread_mutex_unlock(&fl_lock);
}

/* In a forked child only the forking thread lives: the pool starts anew. */
static void fl_pool_after_fork(void)
{
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t wake = PTHREAD_COND_INITIALIZER, finished = PTHREAD_COND_INITIALIZER;
    fl_lock = lock;
    fl_wake = wake;
    fl_finished = finished;
    fl_helpers = fl_sleeping = fl_busy = 0;
}

static void fl_pool_init(void)
{
    pthread_atfork(NULL, NULL, fl_pool_after_fork);
}

#endif
#endif
