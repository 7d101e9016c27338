"""Issue 17: thread safety of sampling, building and inference (the registry's own test is
test_registry_threads.py; the time-conditioned Unet's is in the item-1 tests)."""
import threading

import pytest
import torch

import fuzz_cases
import smp_like as smp

THREADS = 2


def _in_threads(work, count=THREADS):
    """Run ``work(i)`` in ``count`` threads at once; return the results in order (re-raising any error)."""
    results, errors = [None] * count, []
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_ddpm_sample_in_two_threads_equals_sequential(sampler):
    torch.manual_seed(0)
    model = smp.DDPM(encoder_name="tu-test_resnet", encoder_depth=2, decoder_channels=(8, 4), in_channels=1,
                     time_embedding_dim=16, num_train_timesteps=12, num_classes=2, num_inference_steps=4).eval()
    labels = [torch.tensor([0, 1]), torch.tensor([1, 1])]

    def sample(i):
        generator = torch.Generator().manual_seed(100 + i)
        return model.sample(size=(16, 16), labels=labels[i], sampler=sampler, generator=generator, progress=False)

    sequential = [sample(i) for i in range(THREADS)]
    for _ in range(3):
        concurrent = _in_threads(sample)
        for i in range(THREADS):
            torch.testing.assert_close(concurrent[i], sequential[i], rtol=0, atol=0)
    assert not torch.equal(sequential[0], sequential[1])


def test_concurrent_builds_give_complete_models():
    def build(i):
        return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8),
                        classes=1 + i, aux_params=dict(classes=2))

    expected = [{k: tuple(v.shape) for k, v in build(i).state_dict().items()} for i in range(4)]
    models = _in_threads(build, 4)
    for i, model in enumerate(models):
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected[i]
        assert model.config["classes"] == 1 + i


# One model of each kind: CNN segmentation (skips, pyramid, dilated), transformer-style timm encoder, classifier,
# hierarchical, stacked, auto-encoders and the diffusion wrappers (through their forward with timesteps).
KINDS = ["Unet", "FPN", "DeepLabV3Plus", "Segformer", "ClM", "HSeM", "StackedHourglass", "MeshNet", "AE", "VAE",
         "DDPM", "SDPM", "LDPM"]


@pytest.mark.parametrize("name", KINDS)
def test_concurrent_forward_equals_sequential(name):
    torch.manual_seed(0)
    model = fuzz_cases.model_class(name)(**fuzz_cases.BASE[name][0]).eval()
    shape = list(fuzz_cases.BASE[name][1])
    shape[0] = 2
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(*shape, generator=generator) for _ in range(THREADS)]
    if name == "LDPM":
        inputs = [model.encode_latent(x) for x in inputs]

    def forward(i):
        outs = []
        with torch.no_grad():
            for _ in range(2 if name == "SDPM" else 5):
                if name in ("DDPM", "LDPM"):
                    out = model(inputs[i], torch.tensor([1 + i, 7 - i]))
                elif name == "SDPM":  # sampling: a generator per call makes it reproducible
                    out = model(inputs[i], num_ensemble=1, generator=torch.Generator().manual_seed(i),
                                num_inference_steps=3, sampler="ddim")
                else:
                    out = model(inputs[i])
                outs.append(out if isinstance(out, torch.Tensor) else out[0])
        return outs

    sequential = [forward(i)[0] for i in range(THREADS)]
    for i, outs in enumerate(_in_threads(forward)):
        for out in outs:
            torch.testing.assert_close(out, sequential[i], rtol=0, atol=0)
