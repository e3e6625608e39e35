# The forward kernel's entry point, for the validating layer to call without
# going through Python.
cpdef forward(object x, object W, object b, object y, int act, object z, int plan,
              int num_threads)
