"""Run moto's server with regseal's KMS DIGEST fix applied.

``python -m regseal.local.motoserver_main -H 127.0.0.1 -p PORT`` takes the
arguments of ``python -m moto.server``. It applies
:func:`regseal.local.motokms.install` in the server's own process first, so
KMS ``Sign`` requests with ``MessageType=DIGEST`` (what securesystemslib's
``AWSSigner`` sends for TUF metadata) produce signatures that verify.

NOTE: needed until moto implements DIGEST (getmoto/moto#10202); then the local
stack can start ``python -m moto.server`` again.
"""

from __future__ import annotations

import sys

from moto import server

from regseal.local import motokms


def main(argv: list[str] | None = None) -> None:
    """Install the fix, then hand the arguments to moto's server."""
    motokms.install()
    server.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
