"""Which words moved a prediction: the split of the score over tokens
(``scores``) and its text and HTML forms (``text``, ``html``). Imports the
model side and below.
"""
