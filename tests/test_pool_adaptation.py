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
import sysconfig

import pytest
from _helpers import c_compiler_fails

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL = os.path.join(REPO, "fastlinear", "_pool.h")

PROGRAM = r"""
#include "_pool.h"
#include <stdio.h>
#include <string.h>

static atomic_int active, peak, off_caller;
static pthread_t caller;

static void nap(long ns)
{
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

/* Records how many tasks run at once, and how many ran off the calling thread. */
static void task(Py_ssize_t t, void *arg)
{
    int now = atomic_fetch_add(&active, 1) + 1, seen = atomic_load(&peak);
    (void)t;
    while (now > seen && !atomic_compare_exchange_weak(&peak, &seen, now))
        ;
    if (!pthread_equal(pthread_self(), caller))
        atomic_fetch_add(&off_caller, 1);
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

/* Sets the pool's state so that its next judged job is lost (the window closes
 * with the caller having run a tiny share of its time), runs jobs until one is
 * judged (one whose helpers were all polling), and leaves the state it made. */
static int lose_one(int strikes, int alone_next)
{
    int tries;
    for (tries = 0; tries < 5000; tries++) {
        int judged;
        pthread_mutex_lock(&fl_lock);
        fl_alone = 0;
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
        fl_pool_adapt(0);
        CHECK(fl_alone == 0 && fl_strikes == 0);
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
        /* A job whose helpers were asleep is not judged: a woken helper comes late on
         * any machine, so tasks the caller ran alone before it came are no loss. */
        job(4, 2, 0);
        for (i = 0; i < 6; i++) {
            nap(20000000);  /* past the helpers' polling: they sleep */
            fl_parallel_for(2, 2, noop, NULL);  /* done before a woken helper comes */
            CHECK(fl_strikes == 0 && fl_alone == 0);
        }
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
    subprocess.run(["cc", "-O1", "-pthread", "-I", os.path.dirname(POOL), "-I", include,
                    str(source), "-o", str(exe)], check=True)
    return str(exe)


@pytest.mark.parametrize("check", ["seats", "one_loss", "two_losses", "cap", "adapt_off",
                                   "arrival", "woken_helps", "woken_not_judged"])
def test_pool_adaptation(pool_program, check):
    proc = subprocess.run([pool_program, check], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and f"ok {check}" in proc.stdout, proc.stdout + proc.stderr
