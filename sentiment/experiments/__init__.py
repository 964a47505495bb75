"""The experiment tooling of ``compare_optimizers.py`` and ``run_variants.py``:
one comparison run as a task (``comparison``), the tables (``compare_report``,
``reporting``), the learning-rate tuning (``tuning``), the statistics
(``stats``), parallel runs on Dask (``parallel``) and the figures
(``plotting``). The top layer: it may import every other.
"""
