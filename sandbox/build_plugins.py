"""Build the sample and test plug-ins from their C and Zig sources with `ziglang` (Zig from PyPI).

    python -m sandbox.build_plugins            # rebuild every committed .wasm in place
    python -m sandbox.build_plugins --out DIR  # build into DIR instead (the tests compare the two)

The builds are deterministic, so a fresh build must equal the committed files byte for byte.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PDK_DIR = ROOT / "sandbox" / "plugins" / "src"


@dataclass(frozen=True)
class Target:
    source: Path
    wasi: bool = False

    @property
    def wasm_name(self) -> str:
        return self.source.stem + ".wasm"

    @property
    def committed(self) -> Path:
        return self.source.parent.parent / self.wasm_name


def targets() -> list[Target]:
    found = []
    for folder in (ROOT / "sandbox" / "plugins" / "src", ROOT / "tests" / "plugins" / "src"):
        for source in sorted([*folder.glob("*.c"), *folder.glob("*.zig")]):
            found.append(Target(source, wasi="#include <stdio.h>" in source.read_text()))
    return found


def command(target: Target, out: Path) -> list[str]:
    zig = [sys.executable, "-m", "ziglang"]
    if target.source.suffix == ".zig":
        return [*zig, "build-exe", "-target", "wasm32-freestanding", "-fno-entry", "-rdynamic", "-O", "ReleaseSmall",
                "--stack", "262144", f"-femit-bin={out}", str(target.source)]
    if target.wasi:
        flags = ["--target=wasm32-wasi", "-mexec-model=reactor"]
    else:
        flags = ["--target=wasm32-freestanding", "-nostdlib", "-Wl,--no-entry"]
    # A 256 KiB stack instead of the linker's default keeps the plug-ins' memory well under the 16 MiB default grant.
    flags.append("-Wl,-z,stack-size=262144")
    return [*zig, "cc", *flags, "-O2", "-s", "-I", str(PDK_DIR), "-o", str(out), str(target.source)]


def build(target: Target, out_dir: Path | None = None) -> Path:
    out = (out_dir / target.wasm_name) if out_dir else target.committed
    # Zig leaves a .zig-cache in its working directory: give it a throwaway one.
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(command(target, out.resolve()), check=True, cwd=scratch)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="Write the .wasm files here instead of next to their sources.")
    args = parser.parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for target in targets():
        start = time.perf_counter()
        out = build(target, args.out)
        print(f"built {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
              f"({out.stat().st_size} bytes, {time.perf_counter() - start:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
