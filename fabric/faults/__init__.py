"""The fault-injection suite: faults against real processes while a workload writes, and after
each, once the fabric has caught up, a full comparison with Postgres (docs/faults.md).

Modules, from the edge inwards: :mod:`~fabric.faults.suite` (a session: cluster, workload, prober
and runner set up and torn down together), :mod:`~fabric.faults.runner` (one fault: inject, wait
for recovery, pause, catch up, verify), :mod:`~fabric.faults.kinds` (the faults and which fit a
cluster), :mod:`~fabric.faults.instances` (`fabric serve` processes), :mod:`~fabric.faults.prober`
(lookup availability) and :mod:`~fabric.faults.report` (results and the report table).
"""
