"""One-shot wall time of `exoclaw chat --message` next to `manage.py chat --message`, against one running server.

The project is installed into a fresh virtualenv (as tests/test_package.py does: offline, from a copy)
so the `exoclaw` measured is the installed script. One daphne (`manage.py serve`, the echo demo after
migrate and bootstrap) serves every run. Each round runs, one after another: `python -c pass` (the
interpreter's own start, the floor), the installed `exoclaw chat --message`, and `manage.py chat
--message`, each from process start to exit, asking the demo agent the same question. Rounds
interleave so the machine's load hits each alike; the figures are medians over the rounds.

    .venv/bin/python bench/cli.py                 # 20 rounds
    .venv/bin/python bench/cli.py --rounds 50

It needs setuptools >= 70.1 (requirements-dev.txt) to build the package without a download.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchlib import bench_env, free_port, manage  # noqa: E402
from tests.package_support import install_fresh  # noqa: E402

QUESTION = "what is the time"


def wall(args: list, cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args[:4]))}… failed: {done.stderr.strip()[-500:]}")
    return took * 1000


def serve(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # daphne says when it listens
        if f"Listening on TCP address 127.0.0.1:{port}" in line:
            # Keep reading its log, so a full pipe never stalls the server.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc
    sys.exit(f"manage.py serve exited with {proc.wait()} before listening")


def main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="exoclaw-bench-cli-") as tmp:
        tmp = Path(tmp)
        print("installing exoclaw into a fresh virtualenv…", file=sys.stderr)
        exoclaw = install_fresh(tmp) / "bin" / "exoclaw"
        env = bench_env(str(tmp / "var"))
        env.pop("PYTHONPATH", None)
        manage(env, "migrate", "--noinput")
        manage(env, "bootstrap")
        port = free_port()
        server = serve(env, port)
        url = f"ws://127.0.0.1:{port}/ws"
        chat = ["chat", "--url", url, "--agent", "demo", "--peer", "bench", "--message", QUESTION]
        commands = {
            "python -c pass (floor)": ([sys.executable, "-c", "pass"], tmp),
            "exoclaw chat --message": ([exoclaw, *chat], tmp),
            "manage.py chat --message": ([sys.executable, "manage.py", *chat], ROOT),
        }
        times = {name: [] for name in commands}
        try:
            for name, (argv, cwd) in commands.items():  # one warm-up each: the disk cache, .pyc files
                wall(argv, cwd, env)
            for _ in range(args.rounds):
                for name, (argv, cwd) in commands.items():
                    times[name].append(wall(argv, cwd, env))
        finally:
            server.terminate()
            server.wait()
    print(f"\none-shot wall time, {args.rounds} interleaved rounds (ms)   median      min      max")
    for name, values in times.items():
        print(f"  {name:<44} {statistics.median(values):>8.0f} {min(values):>8.0f} {max(values):>8.0f}")
    ours, theirs = statistics.median(times["exoclaw chat --message"]), statistics.median(times["manage.py chat --message"])
    print(f"\nexoclaw chat / manage.py chat (medians): {ours / theirs:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the three commands (default 20)")
    main(parser.parse_args())
