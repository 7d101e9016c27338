"""Seconds to fail against a Hub endpoint that refuses connections, with an empty cache (issue 17 item 5).

    PYTHONPATH=$PWD python benchmarks/hub_fail_fast.py

Uses HF_ENDPOINT=http://127.0.0.1:9 (nothing listens on port 9: connections are refused at once) unless
HF_ENDPOINT is set, and a fresh HF_HOME. timm is imported and probed first, so its import is not timed.
"""
import os
import tempfile
import time
import warnings

os.environ["HF_HOME"] = tempfile.mkdtemp()
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")

import smp_like as smp  # noqa: E402
from smp_like.encoders import get_encoder  # noqa: E402
from smp_like.encoders.timm_universal import feature_reductions  # noqa: E402

warnings.simplefilter("ignore")
feature_reductions("resnet18")
for label, call in [
    ("tu-resnet18 encoder_weights=imagenet", lambda: get_encoder("tu-resnet18", weights="imagenet", depth=3)),
    ("resnet18 encoder_weights=imagenet", lambda: get_encoder("resnet18", weights="imagenet", depth=3)),
    ("smp.from_pretrained('user/repo')", lambda: smp.from_pretrained("user/repo")),
]:
    start = time.perf_counter()
    try:
        call()
        outcome = "loaded (the endpoint answered?)"
    except Exception as err:  # the point: which error, after how long
        outcome = f"{type(err).__name__}: {str(err).splitlines()[0][:150]}"
    print(f"{label}: {time.perf_counter() - start:.2f} s  {outcome}")
