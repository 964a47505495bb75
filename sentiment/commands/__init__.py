"""What ``lstm.py`` does with a saved model: ``predict``, ``evaluate`` and
``inspect`` (``inspection``). Like every module of the package, none imports
``lstm``: the model's functions are passed in.
"""
