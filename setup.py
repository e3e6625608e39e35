"""Build the Cython kernels.

Their parallel loops run on a pool of POSIX threads (fastlinear/_pool.h);
where there are none (Windows) on OpenMP when the compiler has it.  Set
FASTLINEAR_SERIAL=1 to build kernels without threads, FASTLINEAR_SANITIZE=1
to build with AddressSanitizer and UndefinedBehaviorSanitizer (see
CONTRIBUTING.md).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The kernels, then the validating API: its checks read array headers at C level,
# which is most of the time of a call on small arrays.  _testing gives the tests
# entry points into the kernels' internals.
MODULES = ["_blas", "_parallel", "_epilogue", "_gemm", "_colsum", "_forward", "_backward", "_problem",
           "_checks", "_staging", "_api", "_optim", "_softmax", "_testing"]
# The C code each module compiles from headers, so that a changed header rebuilds it
# (setuptools compares only the sources otherwise).  Other modules include
# _activations.h for its enum alone.
HEADERS = {"_parallel": ["fastlinear/_pool.h"], "_backward": ["fastlinear/_transpose.h"],
           "_epilogue": ["fastlinear/_activations.h", "fastlinear/_activation_loops.h"]}
OPENMP_FLAGS = {"msvc": (["/openmp"], [])}


def compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program; True if that works."""
    compile_args, link_args = OPENMP_FLAGS.get(compiler.compiler_type, ([], []))
    if not compile_args:
        return False
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "omp_check.c")
    with open(src, "w") as f:
        f.write(textwrap.dedent("""
            #include <omp.h>
            int main(void) {
                int n = 0;
                #pragma omp parallel reduction(+:n)
                n += 1;
                return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
            }
        """))
    try:
        objects = compiler.compile([src], output_dir=tmp, extra_postargs=compile_args)
        compiler.link_executable(objects, os.path.join(tmp, "omp_check"),
                                 extra_postargs=link_args)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        serial = os.environ.get("FASTLINEAR_SERIAL") == "1"
        unix = self.compiler.compiler_type == "unix"
        use_openmp = not serial and not unix and compiler_has_openmp(self.compiler)
        if not serial and not unix and not use_openmp:
            warnings.warn("fastlinear: the C compiler has no OpenMP; building serial "
                          "kernels (num_threads will have no effect)")
        compile_args, link_args = OPENMP_FLAGS.get(self.compiler.compiler_type, ([], []))
        sanitize = os.environ.get("FASTLINEAR_SANITIZE") == "1"
        for ext in self.extensions:
            if serial:
                ext.define_macros.append(("FL_SERIAL", "1"))
            if unix:
                # -fno-trapping-math lets the activations' selects become SIMD blends and
                # -fno-math-errno lets sqrt become a SIMD instruction: neither changes a
                # value (unlike -ffast-math), only whether FP flags or errno may be set.
                ext.extra_compile_args += ["-O3", "-fno-trapping-math", "-fno-math-errno"] + (
                    [] if serial else ["-pthread"])
                ext.extra_link_args += [] if serial else ["-pthread"]
            if use_openmp:
                ext.extra_compile_args += compile_args
                ext.extra_link_args += link_args
            if sanitize:
                flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
                ext.extra_compile_args += flags
                ext.extra_link_args += flags
        super().build_extensions()


extensions = [
    Extension(f"fastlinear.{name}", [f"fastlinear/{name}.pyx"], depends=HEADERS.get(name, []),
              include_dirs=[np.get_include(), "fastlinear"],
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")])
    for name in MODULES
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": 3},
                          include_path=["."]),
    cmdclass={"build_ext": BuildExt},
)
