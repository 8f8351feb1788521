"""Start the Streamlit app (and the scheduler sidecar when it exists) and stop both together."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8501)
    args = p.parse_args()
    procs = []
    if importlib.util.find_spec("procurement.scheduler"):
        procs.append(subprocess.Popen([sys.executable, "-m", "procurement.scheduler"], cwd=ROOT))
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(args.port),
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env={**os.environ},
    )
    procs.append(app)
    print(f"procurement is running on http://localhost:{args.port}  (Ctrl+C stops it)", flush=True)
    try:
        return app.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
