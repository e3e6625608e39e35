/* Lets the kernels ask whether they were compiled with OpenMP without
 * including omp.h, so that a compiler without OpenMP still builds them
 * (prange then runs serially). */
#ifdef _OPENMP
#define FL_HAVE_OPENMP 1
#else
#define FL_HAVE_OPENMP 0
#endif
