"""regseal's benchmarks: the seal engine and the system around it, side by side.

Run ``make bench`` (or ``python -m benchmarks`` from the checkout's root);
``--quick`` runs every measurement with small sizes, as a smoke test. Each
section measures regseal and a reference in the same run and prints one table
of rows with their ratio and the target the ratio is held against. Targets are
reported, never asserted. docs/performance.md explains the rows.
"""
