import sys

from avsf.cli import main

sys.exit(main())
