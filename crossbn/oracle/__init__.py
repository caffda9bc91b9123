"""The oracle: what every case should give, computed exactly in NumPy.

batchnorm.py is the float64 reference, one plain function per stage of the
forward and backward pass and of the running-statistics update (no framework,
nothing else of crossbn); variants.py the alternative formulations frameworks
use. inputs.py draws a case's arrays, expected.py drives the reference through
its steps, tolerance.py bounds the rounding error a correct framework may
show, formulation.py simulates the variants; networks.py and
network_inputs.py do the same for the models suite.
"""
