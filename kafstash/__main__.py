import sys

from kafstash.cli import main

sys.exit(main())
