import sys

from listserv.cli import main

sys.exit(main())
