"""Random-features regression of sin(3x), configured by the globals below (Guild AI's default style).

guildlite sets these in the run's copy of this file; this file is never edited.
"""

import math
import random

# --- settings ----------------------------------------------------------------------------------
lr = 0.02            # step size
epochs: int = 5      # passes over the data
hidden = 16          # random features
activation = "cos"   # cos or tanh
shuffle = True
seed = 0
# -------------------------------------------------------------------------------------------------

act = {"cos": math.cos, "tanh": math.tanh}[activation]
rng = random.Random(seed)
features = [(rng.gauss(0, 2), rng.uniform(0, 2 * math.pi)) for _ in range(hidden)]
data = [(x, math.sin(3 * x)) for x in (rng.uniform(-1, 1) for _ in range(200))]
w = [0.0] * hidden
print(f"settings: lr={lr} epochs={epochs} hidden={hidden} activation={activation} shuffle={shuffle}")
for epoch in range(1, epochs + 1):
    if shuffle:
        rng.shuffle(data)
    total = 0.0
    for x, y in data:
        phi = [act(a * x + c) for a, c in features]
        err = sum(wi * p for wi, p in zip(w, phi)) - y
        w = [wi - lr * err * p for wi, p in zip(w, phi)]
        total += err * err
    print(f"step: {epoch}")
    print(f"loss: {total / len(data):.6f}")
