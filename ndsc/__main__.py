import sys

from ndsc.cli import main

sys.exit(main())
