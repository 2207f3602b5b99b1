"""The decision core: routing policy and rules, guarantees, thresholds (global and per segment) and the
what-if simulation.

Plain libraries on top of `features`; imported by `bundle`, `training` and `serving`, imports none of them.
"""
