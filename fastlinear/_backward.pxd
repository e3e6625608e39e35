# The backward kernel's entry point, for the validating layer to call without
# going through Python.
cpdef backward(object x, object W, object dy, object dx, object dW, object db,
               tuple accumulate, int path, int num_threads)
