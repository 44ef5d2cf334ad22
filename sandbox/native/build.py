"""Build the native call pool (`calls.c`) with ziglang from PyPI: `python -m sandbox.native.build`.

`make install` and `make test` run this; the library is built for this machine and not committed.
"""

import subprocess
import sys

from . import LIBRARY, SOURCE


def build() -> None:
    command = [sys.executable, "-m", "ziglang", "cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
               "-o", str(LIBRARY), str(SOURCE), "-lpthread", "-ldl"]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    build()
    print(f"built {LIBRARY}")
