# The backward kernel's entry point, for the validating layer to call without
# going through Python.
cpdef backward(object x, object W, object dy, object dx, object dW, object db,
               bint add_dx, bint add_dW, bint add_db, int act, object saved, bint overwrite_dy,
               object dz, int plan, int num_threads, double scale=*)
