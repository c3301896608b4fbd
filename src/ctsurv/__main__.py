import sys

from ctsurv.cli import main

sys.exit(main())
