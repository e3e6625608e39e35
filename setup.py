"""Build the Cython kernels, with OpenMP when the compiler has it.

Set FASTLINEAR_SANITIZE=1 to build with AddressSanitizer and
UndefinedBehaviorSanitizer (see CONTRIBUTING.md).
"""
import os
import shlex
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
# which is most of the time of a call on small arrays.
MODULES = ["_blas", "_parallel", "_gemm", "_colsum", "_forward", "_backward", "_api"]
# OpenMP flags (compile, link) to try in order.  Apple's clang takes OpenMP only through
# its preprocessor and needs libomp linked by name (found through CPPFLAGS and LDFLAGS).
OPENMP_FLAGS = {
    "unix": [(["-fopenmp"], ["-fopenmp"])]
            + ([(["-Xpreprocessor", "-fopenmp"], ["-lomp"])] if sys.platform == "darwin" else []),
    "msvc": [(["/openmp"], [])],
}


def openmp_flags(compiler):
    """The first (compile, link) flags of OPENMP_FLAGS that build an OpenMP program, or None."""
    for compile_args, link_args in OPENMP_FLAGS.get(compiler.compiler_type, []):
        if builds_openmp(compiler, compile_args, link_args):
            return compile_args, link_args
    return None


def builds_openmp(compiler, compile_args, link_args):
    """Compile and link a tiny OpenMP program with these flags; True if that works."""
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
        # The extensions' links read LDFLAGS, an executable's does not: add them here.
        ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
        compiler.link_executable(objects, os.path.join(tmp, "omp_check"),
                                 extra_postargs=link_args + ldflags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        if os.environ.get("FASTLINEAR_DISABLE_OPENMP") == "1":
            flags = None
        else:
            flags = openmp_flags(self.compiler)
            if flags is None:
                warnings.warn("fastlinear: the C compiler has no OpenMP; building serial "
                              "kernels (num_threads will have no effect)")
        use_openmp = flags is not None
        compile_args, link_args = flags or ([], [])
        sanitize = os.environ.get("FASTLINEAR_SANITIZE") == "1"
        for ext in self.extensions:
            if self.compiler.compiler_type == "unix":
                ext.extra_compile_args += ["-O3"]
            if use_openmp:
                ext.extra_compile_args += compile_args
                ext.extra_link_args += link_args
            if sanitize:
                flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
                ext.extra_compile_args += flags
                ext.extra_link_args += flags
        super().build_extensions()


extensions = [
    Extension(f"fastlinear.{name}", [f"fastlinear/{name}.pyx"],
              include_dirs=[np.get_include(), "fastlinear"],
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")])
    for name in MODULES
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": 3},
                          include_path=["."]),
    cmdclass={"build_ext": BuildExt},
)
