"""procurement: when to buy and how much."""

import os

# LightGBM's OpenMP threads spin while they wait. On a small machine shared by the app, the
# scheduler and tests that is ruinous: measured here, one backtest took 10x longer next to
# another busy process. Passive waiting costs nothing when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
