"""The analyses themselves: pure numpy functions and streaming accumulators over packed
correctness rows and weight vectors, one module per analysis. No pandas, matplotlib or torch.

They live in this subpackage, not beside dyn.analyze's public functions, because importing a
submodule binds its name on the parent package: a module dyn.analyze.measures.stability would clobber
the function dyn.analyze.measures.stability (see dyn.analyze.api).
"""
