"""Live gym-exercise analyzer: capture -> ring buffer -> pose -> 150-frame window -> causal TCN -> reps/form -> sinks."""

__version__ = "0.1.0"
