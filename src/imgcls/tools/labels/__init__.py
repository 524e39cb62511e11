"""`imgcls data labels` (which labels are wrong, and what should they be) and `imgcls data
suggest` (the model's guesses for unlabeled images, the least certain first).

folds.py makes the out-of-fold probabilities, findings.py asks cleanlab which labels they
contradict and writes the CSVs, page.py writes label_issues.html, suggest.py the guesses.
"""
