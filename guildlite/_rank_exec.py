"""Each rank's first step under torchrun: become ``python -u <main> <flags>``.

guildlite starts ``torchrun ... <this file>`` (a script path: no package import) and passes the op's main and flags in
``GUILDLITE_ARGV``, so torchrun's own option parser never sees them: a script flag such as
``--n=3`` or ``--max-restarts=1`` would otherwise be taken (or rejected) as a torchrun option.
"""

import json
import os
import sys

argv = json.loads(os.environ.pop("GUILDLITE_ARGV"))
os.execv(sys.executable, [sys.executable, "-u", *argv])
