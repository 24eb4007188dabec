"""Build settings that pyproject.toml cannot say: the test modules beside the code (`*_test.py`)
are left out of the wheel and the sdist. Everything else is in pyproject.toml."""

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithoutTests(build_py):
    """build_py that skips every module named `*_test` (the tests stay in the repository)."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, module, path) for pkg, module, path in modules if not module.endswith("_test")]


setup(cmdclass={"build_py": BuildPyWithoutTests})
