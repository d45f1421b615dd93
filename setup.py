"""The build of the optional compiled module; the package's metadata is in pyproject.toml.

``journalstate._speedups`` is compiled with the machine's C compiler when there is one. It is
optional: without a compiler (or when it fails) the install goes on, and the package runs its
pure Python paths (see journalstate/_accel.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "journalstate._speedups",
            ["journalstate/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
