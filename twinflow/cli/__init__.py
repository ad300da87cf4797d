"""The ``twinflow`` command line, one module per command group.

Imported to start the command (the ``twinflow`` script, or ``python -m twinflow.cli.main``), this
package first handles SIGTERM and SIGINT (:func:`connectors.stopping.stop_on_signals`): a stop that
comes during the half second of imports, or later during a command's start-up, is recorded and the
command honours it as soon as it starts (exit 0, no traceback) instead of being killed by it.
Imported by anything else (tests, another program), it leaves the process' signals alone.
"""

import os
import sys

if sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0]) == "twinflow":  # -m: while Python locates the module
    from connectors.stopping import stop_on_signals

    stop_on_signals()
