import sys

from ftdoctor.entry.cli import main

sys.exit(main())
