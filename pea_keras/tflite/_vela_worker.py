"""Run Arm's Vela compiler in its own process: ``python -P _vela_worker.py VELA_ARGS...``.

Vela's own mistakes (an unknown system config, an unreadable .ini) are raised as ``VelaError``
with a traceback; here they end as one line ``pea-worker: error: <message>`` and exit 3, so that
the parent (vela.py) can repeat Vela's words. Anything else keeps its traceback, and a crash of
Vela's native compiler (its C++ core) kills only this process.
"""

import sys

REFUSED = 3


def main(argv):
    from ethosu.vela.errors import VelaError
    from ethosu.vela.vela import main as vela_main

    try:
        return vela_main(argv) or 0
    except VelaError as e:
        message = e.data[7:] if e.data.startswith("Error: ") else e.data
        print(f"pea-worker: error: {message}", file=sys.stderr, flush=True)
        return REFUSED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
