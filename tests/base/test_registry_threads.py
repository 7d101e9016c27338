"""Issue 17 item 9: registering encoders and model classes while other threads read the registries is safe."""
import sys
import threading

import smp_like.encoders as E
from smp_like.base.model import SegmentationModel
from smp_like.base.registry import MODEL_REGISTRY, classes_with

ROUNDS = 1500


def _run_concurrently(writer, reader):
    errors = []
    stop = threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                reader()
            except Exception as error:  # noqa: BLE001 - every failure is collected and asserted on below
                errors.append(error)

    thread = threading.Thread(target=read_loop)
    # Switch threads as often as possible, so an unsafe iteration meets a concurrent write within the test.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread.start()
    try:
        writer()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    return errors


def _no_3d_encoder():
    return next(n for n, e in E.encoders.items() if 3 not in tuple(e.get("spatial_dims", (2,))))


def test_register_encoder_while_another_thread_lists_encoders():
    name = _no_3d_encoder()
    cls = E.encoders[name]["encoder"]
    names = [f"hardening_thread_enc_{i}" for i in range(ROUNDS)]
    calls = []

    def reader():
        calls.append(1)
        try:
            E.get_encoder(name, spatial_dims=3)
        except ValueError as error:
            assert "encoders that support spatial_dims=3" in str(error)
        assert isinstance(E.get_encoder_names(), list)

    def writer():
        for n in names:
            E.register_encoder(n, cls, spatial_dims=(3,))

    try:
        errors = _run_concurrently(writer, reader)
    finally:
        for n in names:
            E.encoders.pop(n, None)
    assert calls and errors == []


def test_defining_model_classes_while_another_thread_queries_capabilities():
    created = []

    def writer():
        for i in range(ROUNDS // 3):
            created.append(type(f"HardeningThreadModel{i}", (SegmentationModel,), {}))

    def reader():
        assert "Unet" in classes_with("accepts_time_embedding")

    try:
        errors = _run_concurrently(writer, reader)
    finally:
        for cls in created:
            MODEL_REGISTRY.pop(cls.__name__.lower(), None)
    assert errors == []
