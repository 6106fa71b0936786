"""The optional C kernels of the analyses (analyze/_bits.c); everything else is in pyproject.toml.

Optional: where no C compiler is found the install still succeeds, and analyze/kernels.py
counts with numpy instead (same results, slower: benchmarks/README.md, "The numpy fallback").
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dyn.analyze._bits", ["analyze/_bits.c"], optional=True,
                             extra_compile_args=["-O3"]),
                   # float16 sums of the training-dynamics analyses (analyze/half.py)
                   Extension("dyn.analyze._half", ["analyze/_half.c"], optional=True,
                             extra_compile_args=["-O3"])])
