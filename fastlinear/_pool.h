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

static void fl_pool_adapt(int on) { (void)on; }

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
/* On a machine busier than its cores, sharing a job loses to running it on
 * the caller alone: a polling helper takes a core from the caller, and one
 * descheduled while it holds a task makes the caller wait.  So after two
 * losses in a row the next jobs run on the caller alone, with the helpers
 * asleep: FL_ALONE_MIN jobs at first, four times as many after each further
 * loss, up to FL_ALONE_MAX, half as many after a win.  A job is lost
 *  - if its helpers' tasks ended later after the caller's than the caller
 *    would have taken to run them at its own pace on that job (a helper was
 *    descheduled while it held a task);
 *  - if no helper came for a task before the caller had run them all;
 *  - if it woke helpers that went to sleep crowded out: they had run less
 *    than FL_SHARE of their poll (on a busy machine a helper descheduled
 *    while it polls misses the next jobs and sleeps);
 * and FL_WINDOW jobs are lost together if the caller ran less than FL_SHARE
 * of the time it worked on them (another runnable thread shared its core).
 * Other jobs whose helpers were asleep are not judged: one woken from sleep
 * is late on any machine.  Counts of jobs and shares of time, not times: each
 * job measures for itself, on any CPU, whether sharing paid. */
#define FL_ALONE_MIN 16
#define FL_ALONE_MAX 1024
#define FL_WINDOW 8
#define FL_SHARE 0.9

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
static atomic_llong fl_helper_end;    /* when a helper last finished one of its tasks */
static int64_t fl_arrival;            /* when the first helper came for its tasks */
static int fl_alone = 0;              /* jobs left to run on the caller alone */
static int fl_judged = 0;             /* jobs judged in the current window */
static int fl_strikes = 0;            /* losses since the last win */
static int fl_adaptive = 1;           /* whether jobs are judged at all */
static int fl_judging = 0;            /* whether the current job is (its helpers time their tasks) */
static int fl_crowded = 0;            /* a helper ran less than FL_SHARE of its last poll */
static int64_t fl_caller_cpu = 0;     /* the caller's CPU ns working on them */
static int64_t fl_caller_wall = 0;    /* and wall-clock ns */
static int fl_alone_next = FL_ALONE_MIN;  /* how many after the next job that lost */

/* Start a new window of judged jobs (under fl_lock). */
static void fl_new_window(void)
{
    fl_judged = 0;
    fl_caller_cpu = fl_caller_wall = 0;
}

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

static int64_t fl_thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Claim and run tasks of job `generation` until none is left; the number run.
 * A helper of a judged job (`timed` nonzero) records when each of its tasks
 * ended in fl_helper_end before it counts the task done, so the caller reads
 * the last end: one reading of the (monotonic, not CPU) clock per task. */
static Py_ssize_t fl_work(unsigned generation, fl_task fn, void *arg, Py_ssize_t n, int timed)
{
    Py_ssize_t ran = 0;
    for (;;) {
        uint64_t claim = atomic_load(&fl_claim);
        if ((unsigned)(claim >> 32) != generation || (Py_ssize_t)(claim & 0xffffffffu) >= n)
            return ran;
        if (atomic_compare_exchange_weak(&fl_claim, &claim, claim + 1)) {
            ran++;
            fn((Py_ssize_t)(claim & 0xffffffffu), arg);
            if (timed) {
                long long end = fl_now_ns(), last = atomic_load(&fl_helper_end);
                while (last < end && !atomic_compare_exchange_weak(&fl_helper_end, &last, end))
                    ;
            }
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
        int spin, join, timed, crowded = 0;
        int64_t start = 0, cpu = 0, now;
        for (spin = 1; atomic_load(&fl_generation) == seen; spin++) {
            fl_pause();
            if (spin % FL_SPIN_CHECK)
                continue;
            now = fl_now_ns();
            if (spin == FL_SPIN_CHECK) {
                /* The poll is timed from here: a job that comes sooner costs no clock. */
                start = now;
                cpu = fl_thread_cpu_ns();
            } else if (now > start + FL_SPIN_NS) {
                crowded = fl_thread_cpu_ns() - cpu < FL_SHARE * (now - start);
                break;
            }
        }
        pthread_mutex_lock(&fl_lock);
        if (atomic_load(&fl_generation) == seen)
            fl_crowded |= crowded && fl_adaptive;
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
        timed = join && fl_judging;
        if (timed && fl_arrival == 0)
            fl_arrival = fl_now_ns();
        pthread_mutex_unlock(&fl_lock);
        if (join)
            fl_work(generation, fn, arg, n, timed);
    }
    return NULL;
}

/* Count a judged job (under fl_lock): `lost` whether sharing it lost, `shared`
 * whether a helper ran one of its tasks. */
static void fl_verdict(int lost, int shared)
{
    /* One loss alone may be a stray interrupt: two in a row are load. */
    fl_strikes = lost ? (fl_strikes < 2 ? fl_strikes + 1 : 2) : shared ? 0 : fl_strikes;
    if (lost && fl_strikes >= 2) {
        fl_alone = fl_alone_next;
        fl_alone_next = fl_alone_next < FL_ALONE_MAX / 4 ? 4 * fl_alone_next : FL_ALONE_MAX;
        fl_new_window();
    } else if (!lost && shared && fl_alone_next > FL_ALONE_MIN) {
        fl_alone_next /= 2;
    }
}

static void fl_parallel_for(Py_ssize_t n, int threads, fl_task fn, void *arg)
{
    unsigned generation;
    Py_ssize_t t, ran;
    int64_t finished = 0, waited, cpu = 0, wall = 0;
    int lost, judged, crowded = 0;
    int polling = 1;
    int wanted = threads - 1 < FL_MAX_HELPERS ? threads - 1 : FL_MAX_HELPERS;
    if (wanted > n - 1)
        wanted = (int)(n - 1);
    if (n >= ((Py_ssize_t)1 << 31))
        wanted = 0;  /* claims count tasks in 32 bits; no caller has this many */
    pthread_mutex_lock(&fl_lock);
    if (wanted > 0 && !fl_busy && fl_alone > 0) {
        fl_alone--;
        wanted = 0;
    }
    if (wanted <= 0 || fl_busy) {  /* one thread, the pool is another caller's, or alone */
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
        polling = 0;  /* a new helper has yet to start */
    }
    generation = atomic_load(&fl_generation) + 1;
    fl_fn = fn;
    fl_arg = arg;
    fl_n = n;
    atomic_store(&fl_done, 0);
    atomic_store(&fl_helper_end, 0);
    fl_arrival = 0;
    fl_seats = wanted;
    atomic_store(&fl_claim, (uint64_t)generation << 32);
    atomic_store(&fl_generation, generation);
    if (fl_sleeping) {
        polling = 0;
        crowded = fl_crowded;
        fl_crowded = 0;
        pthread_cond_broadcast(&fl_wake);
    }
    /* Jobs are judged only where every helper was polling; the others read no clock. */
    fl_judging = judged = polling && fl_adaptive;
    pthread_mutex_unlock(&fl_lock);
    if (judged) {
        cpu = fl_thread_cpu_ns();
        wall = fl_now_ns();
    }
    ran = fl_work(generation, fn, arg, n, 0);
    if (judged) {
        finished = fl_now_ns();
        wall = finished - wall;
        cpu = fl_thread_cpu_ns() - cpu;
    }
    /* Only tasks a helper has claimed are left: wait for them to finish. */
    for (t = 0; t < 100 * FL_SPIN_CHECK && atomic_load(&fl_done) < n; t++)
        fl_pause();
    pthread_mutex_lock(&fl_lock);
    while (atomic_load(&fl_done) < n)
        pthread_cond_wait(&fl_finished, &fl_lock);
    if (crowded) {
        fl_verdict(1, 0);  /* its helpers slept because they were crowded out */
    } else if (judged && ran > 0) {
        /* Up to the helpers' last task's end, not the caller's wake-up. */
        waited = ran < n ? atomic_load(&fl_helper_end) - finished : 0;
        lost = (double)waited * ran > (double)wall * (n - ran)
            || (ran == n && (fl_arrival == 0 || fl_arrival > finished));
        fl_caller_cpu += cpu;
        fl_caller_wall += wall;
        if (++fl_judged == FL_WINDOW) {
            lost |= fl_caller_cpu < FL_SHARE * fl_caller_wall;
            fl_new_window();
        }
        fl_verdict(lost, ran < n);
    }
    fl_busy = 0;
    pthread_mutex_unlock(&fl_lock);
}

/* Whether jobs may run on the caller alone after losses (on) or always share
 * (off, as while plans are timed: a plan is chosen for a machine whose cores
 * are free, and the judgement applies to whichever plan runs). */
static void fl_pool_adapt(int on)
{
    pthread_mutex_lock(&fl_lock);
    fl_adaptive = on;
    fl_alone = fl_strikes = fl_crowded = 0;
    fl_new_window();
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
    fl_helpers = fl_sleeping = fl_busy = fl_alone = fl_strikes = fl_crowded = 0;
    fl_adaptive = 1;
    fl_alone_next = FL_ALONE_MIN;
    fl_new_window();
}

static void fl_pool_init(void)
{
    pthread_atfork(NULL, NULL, fl_pool_after_fork);
}

#endif
#endif
