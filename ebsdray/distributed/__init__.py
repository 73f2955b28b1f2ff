"""Ray: model replicas (actors) and aggregation tasks for volume reconstruction, the volume runner
that schedules them (also in-process), and the Ray Train driver. Knows nothing of the maths: the
units of work are :mod:`ebsdray.posterior` functions."""
