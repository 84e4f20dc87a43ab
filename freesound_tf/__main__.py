"""``python -m freesound_tf``: the ``freesound-tf`` command line."""
import sys

from freesound_tf.cli import main

sys.exit(main())
