import sys

from postwire_loadtest.cli import main

sys.exit(main())
