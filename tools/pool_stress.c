/* Stress test of fastlinear's thread pool (fastlinear/_pool.h) under
 * ThreadSanitizer: many short jobs of varying sizes and thread counts, each
 * checked.  See CONTRIBUTING.md for the command. */
#include "_pool.h"
#include <stdio.h>

static long out[64];

static void task(Py_ssize_t t, void *arg)
{
    out[t] = *(long *)arg + t;
}

int main(void)
{
    long job;
    fl_pool_init();
    for (job = 0; job < 20000; job++) {
        Py_ssize_t n = 1 + job % 37, t;
        fl_parallel_for(n, 1 + job % 4, task, &job);
        for (t = 0; t < n; t++) {
            if (out[t] != job + t) {
                printf("job %ld: task %ld wrong\n", job, (long)t);
                return 1;
            }
        }
    }
    printf("20000 jobs right\n");
    return 0;
}
