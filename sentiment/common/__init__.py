"""What every layer shares: the one-line errors users see (``errors``), atomic
files and safe ``.npz`` reading (``files``), and the wording of messages
(``wording``). Imports nothing else of the project.
"""
