"""Build of the Python package for pip: CMake configures the project (library, tool sources, python/) and builds
the one target massact_python; its output folder build/python/massact is the package. MASSACT_CMAKE_BUILD_DIR
names an already configured build tree to reuse (the tests do, so that pip does not compile it again)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    text = open(os.path.join(HERE, "include", "massact", "core", "version.hpp")).read()
    return re.search(r'"(\d+\.\d+\.\d+)"', text).group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.environ.get("MASSACT_CMAKE_BUILD_DIR") or os.path.join(tempfile.mkdtemp(prefix="massact-pip-"), "build")
        if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
            subprocess.check_call(["cmake", "-S", HERE, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DMASSACT_NATIVE=OFF",
                                   "-DMASSACT_BUILD_TESTS=OFF", "-DMASSACT_BUILD_BENCH=OFF", "-DMASSACT_BUILD_FIGURES=OFF",
                                   "-DMASSACT_MPI=OFF", "-DMASSACT_PYTHON=ON", f"-DPython3_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", build, "--target", "massact_python", "-j", str(os.cpu_count() or 2)])
        package = os.path.join(build, "python", "massact")
        built = [f for f in os.listdir(package) if f.startswith("_massact") and f.endswith(".so")]
        if len(built) != 1:
            raise RuntimeError(f"{package}: expected one _massact*.so, found {built}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(package, built[0]), target)


setup(
    version=version(),
    packages=["massact"],
    package_dir={"massact": "python/massact"},
    ext_modules=[Extension("massact._massact", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
    # (setuptools' own build folder outside the source tree: build/ there is CMake's)
    options={"build": {"build_base": os.path.join(tempfile.gettempdir(), f"massact-setuptools-{os.getuid()}")},
             "egg_info": {"egg_base": tempfile.gettempdir()}},
)
