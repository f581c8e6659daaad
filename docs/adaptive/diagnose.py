"""Per-step ρ, λ and predicted / actual reductions of an adaptive-damping run.

Trains the sorting benchmark's MLP (n = 10, batch 100, the ``--quick``
preset) with ``train_on_batch`` and prints every 10th step: the training
loss, ``λ`` (``lam``), the ratio ``r``, ``ρ``, the predicted and actual
reductions behind ``ρ``, and the Newton loss ``mean_i ½‖s_i‖²``.

Usage (from the repository root)::

    PYTHONPATH=$PWD python docs/adaptive/diagnose.py diff_sort logistic fisher adaptive 300
    # "adapt50": adaptive damping whose ratio starts at 50 instead of 1e-2

The outputs of ``docs/adaptive/diagnostics/`` come from this script: before
the trust region (``before_…``, ``init50_…``) and with it (``after_…``).
"""
import json
import sys
import time

import numpy as np
import tensorflow as tf

from keras_newton.bench.sort_task import SORT_DEFAULTS, sort_task
from keras_newton.bench.task import Variant, build_variant_model
from keras_newton.newton import adaptive_damping

sorter, relaxation, newton, damping, steps = sys.argv[1:6]
steps = int(steps)
initial = float(damping[5:]) if damping.startswith("adapt") and damping != "adaptive" else None
damping = "adaptive" if damping.startswith("adapt") else float(damping)

# Record the reductions each step hands to the rule.
recorded = {}
update = adaptive_damping.DampingState.update


def recording_update(self, damping, actual, predicted, *args, **kwargs):
    for key, value in (("actual", actual), ("predicted", predicted)):
        if key not in recorded:
            with tf.init_scope():
                recorded[key] = tf.Variable(0.0)
        recorded[key].assign(tf.cast(value, tf.float32))
    return update(self, damping, actual, predicted, *args, **kwargs)


adaptive_damping.DampingState.update = recording_update
config = dict(SORT_DEFAULTS, sorter=sorter, n=10, batch_size=100, steps=steps, eval_sets=100,
              scorer="mlp")
if sorter == "diff_sort":
    config.update(relaxation=relaxation, steepness=10.0)
task = sort_task(config)
model = build_variant_model(task, Variant("v", newton=newton, damping=damping), 0)
wrapper = model._newton_wrappers[0]
if initial is not None:
    wrapper.damping_state.ratio.assign(initial)
start = time.time()
rows = []
for i, (x, y) in enumerate(task.train_stream(0).take(steps)):
    logs = model.train_on_batch(x, y, return_dict=True)
    state = wrapper.damping_state
    if state is not None and i % 10 == 0:
        rows.append(dict(step=i, loss=float(logs["loss"]), lam=float(state.damping.numpy()),
                         ratio=float(state.ratio.numpy()),
                         rho=float(state.reduction_ratio.numpy()),
                         pred=float(recorded["predicted"].numpy()),
                         actual=float(recorded["actual"].numpy()),
                         newton_loss=float(logs.get("newton_loss", np.nan))))
print("time/step", (time.time() - start) / steps)
for row in rows:
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
