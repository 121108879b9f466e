"""Golden models: the specification of every bit the RTL computes.

Modules:
  data       IDX reading, the built-in subset, the integer 2x2 downsampling.
  hashing    Integer hash (mix32) and PRNG (xorshift32): order-independent randomness.
  fixedpoint Width-checked integer helpers (saturation, floor shifts, exact select-sums).
  desire     Desire backpropagation, integer golden model (desire_config: settings, constants,
             init; desire_float: the float reference).
  stidi      Binarized STiDi-BP (stidi_fixed: integer golden model; stidi_float: float reference).
  learners   The Learner objects of both rules; train: the rule-agnostic trainer; trace: traces.
"""
