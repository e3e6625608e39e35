# The backward kernel's entry point, for the validating layer to call without
# going through Python.

cdef struct Request:
    # How backward computes the gradients (a dict with these keys from Python).
    bint add_dx, add_dW, add_db  # add into dx, dW, db rather than write them
    int act                      # the forward's activation, whose f' gives dz
    bint overwrite_dy            # dz written into dy
    int plan, num_threads
    double scale                 # dW and db multiplied by it first

cpdef backward(object x, object W, object dy, object dx, object dW, object db, object saved,
               object dz, Request request)
