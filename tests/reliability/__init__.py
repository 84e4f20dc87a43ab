"""What freesound_tf promises when things go wrong, and the tests that hold it to that.

1. No silent loss. Every clip that a submission needs gets a row: clips that cannot be decoded
   are scored with the run's class priors and named (warning + ``test_fallback.csv`` /
   ``<out>.fallback.csv``); a silent clip is scored like any other. Every clip left out of
   training is named with its reason (log, ``<cache>.report.csv``, the run's ``skipped.csv``).
   A kill -9 at any moment loses at most the epoch (or cache shard) in progress.
2. No silent corruption. Two processes on one work folder share the cache safely (one builds,
   the other waits and reuses it); two trainings never share a run folder (the second is
   refused at once). Caches and checkpoints are written to unique temporary files and renamed,
   a cache is checked for completeness before reuse, and a clip whose audio file changed is
   decoded again. A killed process leaves no worker behind.
3. Every failure is one line naming the file or option and the fix, given before heavy work
   where the input allows it (bad ``--folds``/``--n-splits``, an unknown model, an empty recipe,
   a missing output folder), and a run that can finish is never stopped by an undefined metric.
"""
