"""Many training runs at once, through Dask distributed [Dask]_: on this machine
(``jobs`` worker processes) or on a running cluster (its scheduler's address).

No scheduling is done here: each run is one Dask task, and Dask places it on a
free worker. A run's result does not depend on where it ran or beside what:
the seed fixes every random stream, and the project's kernels sum in an order
fixed by the shapes, not by the thread count (``tests/test_reproducible.py``).
Importing this module does no work; Dask is imported when a pool is started.

References
----------
.. [Dask] Dask Development Team, *Dask: Library for dynamic task scheduling*,
   https://dask.org, and its ``distributed`` scheduler.
"""
import contextlib
import os


def threads_per_run(jobs, cores=None):
    """Kernel threads for each of ``jobs`` runs sharing ``cores`` (all of this machine's)."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, jobs))


@contextlib.contextmanager
def pool(jobs=1, cluster=None):
    """A ``dask.distributed.Client`` for ``jobs`` local processes or for the
    scheduler at ``cluster``; None (run in this process) for one job and no
    cluster. Local workers run one task each, with the machine's cores shared
    out (``FUSED_LSTM_THREADS``), and are stopped on leaving.
    """
    if not cluster and jobs <= 1:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover -- in requirements.txt
        raise RuntimeError("--jobs and --cluster need Dask distributed: "
                           "pip install -r requirements.txt") from None
    if cluster:
        with Client(cluster) as client:
            yield client
        return
    threads = str(threads_per_run(jobs))
    env = dict(FUSED_LSTM_THREADS=threads, OMP_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads)
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as local, Client(local) as client:
        yield client


def run_all(client, calls, on_start, on_done):
    """Run each ``(fn, args)`` of ``calls``: ``on_start(i)`` before call ``i``
    starts (in this process) or is sent (to ``client``), ``on_done(i, result)``
    as each finishes, in the order they finish.

    In this process (``client`` None) the calls run one after the other. With
    a client, an exception raised by a call is raised here, and Ctrl-C (or any
    exception) cancels the calls not yet finished before it propagates.
    """
    if client is None:
        for i, (fn, args) in enumerate(calls):
            on_start(i)
            on_done(i, fn(*args))
        return
    from distributed import as_completed
    futures = {}
    for i, (fn, args) in enumerate(calls):
        on_start(i)
        futures[client.submit(fn, *args, pure=False)] = i
    try:
        for future in as_completed(futures):
            on_done(futures[future], future.result())
    finally:
        client.cancel([f for f in futures if not f.done()])
