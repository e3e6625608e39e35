"""The thread pool's adaptation (fastlinear/_pool.h), driven from a C program.

The pool's state is static to the header, so a program that includes it can
set up a state (a window about to close with the caller short of its core,
which judges the next job lost whatever the timing) and check what the pool
made of it: how many jobs it then runs on the caller alone, how that count
grows, that fl_pool_adapt(0) clears it, and that no job takes more threads
than it was given.
"""
import os
import subprocess
import sys
import sysconfig

import pytest
from _helpers import c_compiler_fails

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL = os.path.join(REPO, "fastlinear", "_pool.h")

PROGRAM = r"""
#include "_pool.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

static atomic_int active, peak, off_caller;
static pthread_t caller;

static void nap(long ns)
{
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

static void note_off_caller(void)
{
    if (!pthread_equal(pthread_self(), caller))
        atomic_fetch_add(&off_caller, 1);
}

/* Records how many tasks run at once, and how many ran off the calling thread. */
static void task(Py_ssize_t t, void *arg)
{
    int now = atomic_fetch_add(&active, 1) + 1, seen = atomic_load(&peak);
    (void)t;
    while (now > seen && !atomic_compare_exchange_weak(&peak, &seen, now))
        ;
    note_off_caller();
    nap(*(long *)arg);
    atomic_fetch_sub(&active, 1);
}

static void noop(Py_ssize_t t, void *arg)
{
    (void)t;
    (void)arg;
}

static atomic_int helped;

/* On the caller: waits until a task has run on another thread (1 s at most). */
static void wait_for_help(Py_ssize_t t, void *arg)
{
    int64_t until = fl_now_ns() + 1000000000;
    (void)t;
    (void)arg;
    if (!pthread_equal(pthread_self(), caller)) {
        atomic_store(&helped, 1);
        return;
    }
    while (!atomic_load(&helped) && fl_now_ns() < until)
        nap(100000);
}

static void job(Py_ssize_t n, int threads, long nap_ns)
{
    atomic_store(&peak, 0);
    atomic_store(&off_caller, 0);
    fl_parallel_for(n, threads, task, &nap_ns);
}

/* Waits until a helper sleeps (its poll ran out), then clears the crowded flag it
 * may have set: a woken job then counts as crowded only where a check sets it. */
static void wait_asleep(void)
{
    int asleep = 0;
    while (!asleep) {
        nap(2000000);
        pthread_mutex_lock(&fl_lock);
        asleep = fl_sleeping > 0;
        fl_crowded = 0;
        pthread_mutex_unlock(&fl_lock);
    }
}

/* Naps arg[0] ns on the caller, arg[1] ns on a helper. */
static void uneven(Py_ssize_t t, void *arg)
{
    (void)t;
    note_off_caller();
    nap(((long *)arg)[!pthread_equal(pthread_self(), caller)]);
}

/* Runs jobs of 4 tasks, `uneven` with these naps, one strike before each, until
 * one is judged (its helper was polling) and a helper ran a task of it: the
 * strikes it left (2: lost, 0: won), or -1 if none was in 200 tries. */
static int timed_job(long caller_ns, long helper_ns)
{
    long naps[2] = {caller_ns, helper_ns};
    int tries;
    for (tries = 0; tries < 200; tries++) {
        int judged;
        pthread_mutex_lock(&fl_lock);
        fl_alone = fl_judged = fl_crowded = 0;  /* judged on its timing alone */
        fl_strikes = 1;
        pthread_mutex_unlock(&fl_lock);
        atomic_store(&off_caller, 0);
        fl_parallel_for(4, 2, uneven, naps);
        pthread_mutex_lock(&fl_lock);
        /* A loss that sends jobs alone starts a new window. */
        judged = (fl_judged == 1 || fl_alone > 0) && atomic_load(&off_caller) > 0;
        pthread_mutex_unlock(&fl_lock);
        if (judged)
            return fl_strikes;
    }
    return -1;
}

/* Sets the pool's state so that its next judged job is lost (the window closes
 * with the caller having run a tiny share of its time), runs jobs until one is
 * judged (one whose helpers were all polling), and leaves the state it made. */
static int lose_one(int strikes, int alone_next)
{
    int tries;
    for (tries = 0; tries < 5000; tries++) {
        int judged;
        pthread_mutex_lock(&fl_lock);
        fl_alone = fl_crowded = 0;
        fl_strikes = strikes;
        fl_alone_next = alone_next;
        fl_judged = FL_WINDOW - 1;
        fl_caller_cpu = 0;
        fl_caller_wall = (int64_t)1 << 60;
        pthread_mutex_unlock(&fl_lock);
        job(8, 2, 20000);
        pthread_mutex_lock(&fl_lock);
        judged = fl_judged != FL_WINDOW - 1;
        pthread_mutex_unlock(&fl_lock);
        if (judged)
            return 1;
    }
    printf("no job was judged in %d tries\n", tries);
    return 0;
}

/* A signal handler that keeps its thread off the CPU for 3 ms. */
static void stall(int signal)
{
    struct timespec t = {0, 3000000};
    (void)signal;
    nanosleep(&t, NULL);
}

#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* On a helper: arms a timer that stalls this thread 0.3 ms later, while it polls
 * after the job; on the caller: waits until a helper ran a task (1 s at most). */
static void stall_helper_later(Py_ssize_t t, void *arg)
{
    if (!pthread_equal(pthread_self(), caller)) {
        struct sigevent event;
        struct itimerspec when = {{0, 0}, {0, 300000}};
        timer_t timer;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SIGUSR1;
        event.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_MONOTONIC, &event, &timer) == 0)
            timer_settime(timer, 0, &when, NULL);  /* one shot; the program is short */
    }
    wait_for_help(t, arg);
}

/* Runs a job whose helper is stalled 3 ms while it polls after it (as a
 * descheduled one is), and waits until the helper sleeps.  Whether it was then
 * found crowded out. */
static int crowd_out(void)
{
    int asleep = 0, crowded;
    pthread_mutex_lock(&fl_lock);
    fl_alone = fl_strikes = fl_crowded = 0;  /* the job shares, whatever jobs before it did */
    pthread_mutex_unlock(&fl_lock);
    atomic_store(&helped, 0);
    fl_parallel_for(2, 2, stall_helper_later, NULL);
    while (!asleep) {
        nap(500000);
        pthread_mutex_lock(&fl_lock);
        asleep = fl_sleeping > 0;
        pthread_mutex_unlock(&fl_lock);
    }
    nap(5000000);  /* a stall that came late is over, and the flag it set is read */
    pthread_mutex_lock(&fl_lock);
    crowded = fl_crowded;
    pthread_mutex_unlock(&fl_lock);
    return crowded;
}
#endif

#define CHECK(cond) do { if (!(cond)) { \
    printf("FAIL line %d: %s (alone %d, strikes %d, alone_next %d)\n", __LINE__, #cond, \
           fl_alone, fl_strikes, fl_alone_next); return 1; } } while (0)

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    int i;
    caller = pthread_self();
    fl_pool_init();
    if (!strcmp(what, "seats")) {
        /* Fewer threads than helpers: a job never runs more tasks at once than its threads. */
        int threads;
        fl_pool_adapt(0);
        job(16, 4, 200000);  /* three helpers started */
        for (threads = 1; threads <= 3; threads++) {
            for (i = 0; i < 4; i++) {
                job(16, 4, 200000);  /* every helper awake and polling */
                job(16, threads, 1000000);
                CHECK(atomic_load(&peak) <= threads);
            }
        }
    } else if (!strcmp(what, "one_loss")) {
        /* One loss alone is not load: the jobs still share. */
        CHECK(lose_one(0, FL_ALONE_MIN));
        CHECK(fl_strikes == 1 && fl_alone == 0 && fl_alone_next == FL_ALONE_MIN);
    } else if (!strcmp(what, "two_losses")) {
        /* The second loss in a row: FL_ALONE_MIN jobs alone, four times as many next time. */
        CHECK(lose_one(1, FL_ALONE_MIN));
        CHECK(fl_strikes == 2 && fl_alone == FL_ALONE_MIN && fl_alone_next == 4 * FL_ALONE_MIN);
        /* Those jobs run on the caller alone, each counted off. */
        for (i = 1; i <= FL_ALONE_MIN; i++) {
            job(4, 2, 100000);
            CHECK(atomic_load(&off_caller) == 0 && fl_alone == FL_ALONE_MIN - i);
        }
        CHECK(lose_one(2, 4 * FL_ALONE_MIN));
        CHECK(fl_alone == 4 * FL_ALONE_MIN && fl_alone_next == 16 * FL_ALONE_MIN);
    } else if (!strcmp(what, "cap")) {
        /* Never more than FL_ALONE_MAX jobs alone, from any count halving left. */
        int start[] = {FL_ALONE_MAX / 2, FL_ALONE_MAX / 4, FL_ALONE_MAX / 8, FL_ALONE_MAX};
        for (i = 0; i < 4; i++) {
            CHECK(lose_one(2, start[i]));
            CHECK(fl_alone == start[i]);
            CHECK(fl_alone_next == (start[i] * 4 < FL_ALONE_MAX ? start[i] * 4 : FL_ALONE_MAX));
        }
    } else if (!strcmp(what, "adapt_off")) {
        /* fl_pool_adapt(0) (the planner timing plans): jobs share from the next one on,
         * and no job is judged, so none goes alone. */
        CHECK(lose_one(1, FL_ALONE_MIN));
        CHECK(fl_alone == FL_ALONE_MIN);
        fl_crowded = 1;
        fl_pool_adapt(0);
        CHECK(fl_alone == 0 && fl_strikes == 0 && fl_crowded == 0);
        for (i = 0; i < 50; i++) {
            pthread_mutex_lock(&fl_lock);
            fl_strikes = 1;
            fl_judged = FL_WINDOW - 1;
            fl_caller_cpu = 0;
            fl_caller_wall = (int64_t)1 << 60;
            pthread_mutex_unlock(&fl_lock);
            job(8, 2, 20000);
            CHECK(fl_alone == 0 && fl_strikes == 1 && fl_judged == FL_WINDOW - 1);
        }
        fl_pool_adapt(1);
        CHECK(fl_alone == 0 && fl_strikes == 0 && fl_judged == 0);
    } else if (!strcmp(what, "woken_helps")) {
        /* Helpers woken from sleep (their jobs are not judged) still take tasks, with
         * judgement on and off. */
        int adapt;
        job(4, 2, 0);  /* the helper started (a new one waits for the next job) */
        for (adapt = 1; adapt >= 0; adapt--) {
            fl_pool_adapt(adapt);
            for (i = 0; i < 3; i++) {
                nap(20000000);  /* past the helpers' polling: they sleep */
                atomic_store(&helped, 0);
                fl_parallel_for(4, 2, wait_for_help, NULL);
                CHECK(atomic_load(&helped));
            }
        }
    } else if (!strcmp(what, "woken_not_judged")) {
        /* A job whose helpers were asleep, not crowded out, is not judged: a woken
         * helper comes late on any machine, so tasks the caller ran alone before it
         * came are no loss. */
        job(4, 2, 0);
        for (i = 0; i < 6; i++) {
            wait_asleep();
            fl_parallel_for(2, 2, noop, NULL);  /* done before a woken helper comes */
            CHECK(fl_strikes == 0 && fl_alone == 0);
        }
    } else if (!strcmp(what, "crowded_loses")) {
        /* A job that wakes helpers which slept crowded out is a loss, whatever its
         * timing: the first is a strike, the second in a row sends jobs alone.  The
         * job takes the flag: the next one is judged on what happens after it (no
         * helper can have polled 1 ms since, so the flag is still clear). */
        int strikes;
        job(4, 2, 0);
        for (strikes = 0; strikes <= 1; strikes++) {
            wait_asleep();
            pthread_mutex_lock(&fl_lock);
            fl_alone = 0;
            fl_strikes = strikes;
            fl_alone_next = FL_ALONE_MIN;
            fl_crowded = 1;
            pthread_mutex_unlock(&fl_lock);
            job(4, 2, 0);
            pthread_mutex_lock(&fl_lock);
            CHECK(fl_crowded == 0);
            CHECK(fl_strikes == strikes + 1);
            CHECK(fl_alone == (strikes ? FL_ALONE_MIN : 0));
            pthread_mutex_unlock(&fl_lock);
        }
    } else if (!strcmp(what, "crowded_found") || !strcmp(what, "crowded_off")) {
        /* A helper kept off the CPU while it polls is found crowded out, and never while
         * judgement is off.  In 3 of 5 tries: a busy machine may deschedule the helper
         * before its poll starts, so that the stall comes before it. */
#ifdef __linux__
        int adapt = !strcmp(what, "crowded_found"), found = 0;
        signal(SIGUSR1, stall);
        fl_pool_adapt(adapt);
        for (i = 0; i < 5; i++)
            found += crowd_out();
        CHECK(adapt ? found >= 3 : found == 0);
#else
        printf("ok %s (needs Linux's per-thread timers)\n", what);
        return 0;
#endif
    } else if (!strcmp(what, "fork")) {
        /* A forked child starts with a fresh pool: no strikes, no jobs alone, no flag. */
        int status;
        pid_t child;
        job(4, 2, 0);
        pthread_mutex_lock(&fl_lock);
        fl_strikes = 2;
        fl_alone = 5;
        fl_crowded = 1;
        pthread_mutex_unlock(&fl_lock);
        child = fork();
        if (child == 0)
            _exit(fl_strikes == 0 && fl_alone == 0 && fl_crowded == 0 && fl_helpers == 0 ? 0 : 1);
        CHECK(child > 0 && waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else if (!strcmp(what, "late_helper")) {
        /* A helper whose task ends later after the caller's than the caller would have
         * taken to run it (1 ms a task; 2 ms later, as one descheduled while it holds a
         * task) loses its job; a helper that keeps pace wins.  In one of 5 judged jobs
         * each: on a busy machine the caller's own pace slows too. */
        int won = 0, lost = 0;
        job(4, 2, 0);
        for (i = 0; i < 5 && !lost; i++)
            lost = timed_job(1000000, 5000000) == 2;
        CHECK(lost);
        for (i = 0; i < 5 && !won; i++)
            won = timed_job(2000000, 3000000) == 0;  /* ends 2 ms after, at 2 ms a task */
        CHECK(won);
    } else if (!strcmp(what, "arrival")) {
        /* fl_arrival is when the first helper came for the current job: 0 until one
         * comes, never a time from a job before it. */
        fl_pool_adapt(0);
        for (i = 0; i < 300; i++) {
            int64_t start = fl_now_ns();
            int64_t arrival;
            job(i % 3 + 2, 2, i % 2 ? 50000 : 0);
            pthread_mutex_lock(&fl_lock);
            arrival = fl_arrival;
            pthread_mutex_unlock(&fl_lock);
            CHECK(arrival == 0 || arrival >= start);
        }
    } else {
        printf("unknown check %s\n", what);
        return 2;
    }
    printf("ok %s\n", what);
    return 0;
}
"""


@pytest.fixture(scope="module")
def pool_program(tmp_path_factory):
    if not os.path.exists(POOL):
        pytest.skip("needs the source tree (fastlinear/_pool.h)")
    if os.name != "posix":
        pytest.skip("the pthreads pool")
    why = c_compiler_fails("-pthread")
    if why:
        pytest.skip(f"needs a C compiler: {why}")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        pytest.skip(f"needs Python's headers (no Python.h in {include})")
    folder = tmp_path_factory.mktemp("pool_program")
    source, exe = folder / "pool_adapt.c", folder / "pool_adapt"
    source.write_text(PROGRAM)
    libraries = ["-lrt"] if sys.platform.startswith("linux") else []  # timers, before glibc 2.34
    subprocess.run(["cc", "-O1", "-pthread", "-I", os.path.dirname(POOL), "-I", include,
                    str(source), "-o", str(exe)] + libraries, check=True)
    return str(exe)


@pytest.mark.parametrize("check", ["seats", "one_loss", "two_losses", "cap", "adapt_off",
                                   "arrival", "woken_helps", "woken_not_judged",
                                   "crowded_loses", "crowded_found", "crowded_off",
                                   "late_helper", "fork"])
def test_pool_adaptation(pool_program, check):
    proc = subprocess.run([pool_program, check], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and f"ok {check}" in proc.stdout, proc.stdout + proc.stderr
