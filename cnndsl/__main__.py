import sys

from cnndsl.cli import main

sys.exit(main())
