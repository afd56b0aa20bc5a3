import sys

from omniseg.cli import main

sys.exit(main())
