import sys

from genrec.baselines.cli import main

sys.exit(main())
