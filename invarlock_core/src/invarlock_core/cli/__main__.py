from __future__ import annotations

import sys

from invarlock_core.cli import main

sys.exit(main())
