"""The training config: every section parses, every kind of error names its key path, overrides, round trip."""

import pytest
import yaml

from smp_like.training.config import ConfigError, apply_overrides, load_config, parse_config

from pipeline_helpers import TINY_MODEL


def _base(**extra):
    cfg = {"data": {"classes": ["bg", "fg1"], "train": {"images": "/x/i", "masks": "/x/m"}}, "model": dict(TINY_MODEL)}
    cfg.update(extra)
    return cfg


def _errors(values):
    with pytest.raises(ConfigError) as info:
        parse_config(values)
    return info.value.errors


def test_every_section_parses_and_fills_defaults():
    values = _base(
        seed=3, output_dir="out", run_name="x", resume=False, skip_nonfinite=True,
        loss={"terms": [{"name": "Dice", "weight": 0.5, "smooth": 1.0}, "CE"], "aux_weight": 0.1,
              "deep_supervision": True, "side_weights": [0.5, 0.25]},
        metrics={"names": ["iou", "dice", "precision"], "monitor": "val/dice", "mode": "max"},
        optimizer={"name": "SGD", "lr": 0.1, "momentum": 0.9, "encoder_lr": 0.01},
        scheduler={"name": "CosineAnnealingLR", "interval": "step", "warmup": 5, "eta_min": 1e-5},
        trainer={"max_epochs": 3, "precision": "bf16-mixed", "gradient_clip_val": 1.0, "accumulate_grad_batches": 2,
                 "num_sanity_val_steps": 0},
        checkpoint={"save_top_k": 2, "every_n_train_steps": 50},
        early_stopping={"patience": 3},
        plots={"every_n_epochs": 2, "num_samples": 3},
    )
    values["data"].update({"task": "multiclass", "val_fraction": 0.3, "mask_format": "colour",
                           "colour_map": [[0, 0, 0], [255, 0, 0]], "ignore_index": 255, "crop_size": [16, 16],
                           "augment": {"train": [{"name": "HorizontalFlip", "p": 0.5}], "eval": []},
                           "val_roi_size": [32, 32], "normalization": {"normalization": "zscore"}})
    cfg = parse_config(values)
    assert cfg.loss.terms[0].kwargs == {"smooth": 1.0} and cfg.loss.terms[1].name == "CE"
    assert cfg.optimizer.kwargs == {"momentum": 0.9} and cfg.optimizer.encoder_lr == 0.01
    assert cfg.scheduler.kwargs == {"eta_min": 1e-5} and cfg.trainer.kwargs == {"num_sanity_val_steps": 0}
    assert cfg.data.train[0].images == "/x/i" and cfg.data.colour_map[1] == (255, 0, 0)
    assert cfg.model.kwargs == {"encoder_depth": 3, "decoder_channels": [16, 8, 4]}
    minimal = parse_config(_base())
    assert minimal.trainer.max_epochs == 10 and minimal.optimizer.name == "AdamW"
    assert [t.name for t in minimal.loss.terms] == ["CrossEntropy", "Dice"]


def test_unknown_key_suggests_the_close_name_with_its_path():
    errors = _errors(_base(optimiser={"lr": 1.0}))
    assert any(e.startswith("optimiser: unknown key; did you mean 'optimizer'?") for e in errors), errors
    values = _base()
    values["data"]["bach_size"] = 4
    errors = _errors(values)
    assert any(e.startswith("data.bach_size: unknown key; did you mean 'batch_size'?") for e in errors), errors
    values = _base()
    values["data"]["train"]["imagse"] = "/y"
    assert any("data.train.0.imagse: unknown key; did you mean 'images'?" in e for e in _errors(values))
    # Constructor arguments of open sections are checked against the class's signature.
    assert any("model.encoder_dept" in e and "did you mean 'encoder_depth'" in e
               for e in _errors(_base(model=dict(TINY_MODEL, encoder_dept=3))))
    assert any("optimizer.momentun" in e and "'momentum'" in e
               for e in _errors(_base(optimizer={"name": "SGD", "momentun": 0.9})))


def test_wrong_type_names_path_value_and_expectation():
    values = _base(trainer={"max_epochs": "many"})
    (error,) = [e for e in _errors(values) if e.startswith("trainer.max_epochs")]
    assert "integer" in error and "'many'" in error
    values = _base()
    values["data"]["batch_size"] = 0
    assert any(e.startswith("data.batch_size") and "greater than or equal to 1" in e and "0" in e
               for e in _errors(values))
    values = _base()
    values["data"]["task"] = "segment"
    assert any(e.startswith("data.task") and "'binary'" in e and "'segment'" in e for e in _errors(values))


def test_missing_required_keys():
    errors = _errors({"model": dict(TINY_MODEL)})
    assert "data: required key is missing" in errors
    errors = _errors({"data": {"train": {"images": "/i"}}})
    assert "data.classes: required key is missing" in errors
    # Masks may be left out (images-only runs), but a segmentation run reports it.
    errors = _errors({"data": {"train": {"images": "/i"}, "classes": ["bg", "fg"]}})
    assert any(e.startswith("data.train.0.masks: a segmentation run needs mask folders") for e in errors)


def test_unknown_loss_optimizer_scheduler_list_choices():
    errors = _errors(_base(loss=["Dicee"], optimizer={"name": "Adamw"}, scheduler={"name": "CosineAnealingLR"}))
    loss = next(e for e in errors if e.startswith("loss.terms.0.name"))
    assert "did you mean 'dice'" in loss and "focal" in loss and "jaccard" in loss
    opt = next(e for e in errors if e.startswith("optimizer.name"))
    assert "did you mean 'AdamW'" in opt and "SGD" in opt and "Adam" in opt
    sched = next(e for e in errors if e.startswith("scheduler.name"))
    assert "did you mean 'CosineAnnealingLR'" in sched and "OneCycleLR" in sched and "StepLR" in sched
    assert any(e.startswith("model.arch") and "'Unet'" in e for e in _errors(_base(model={"arch": "Unett"})))


def test_overrides_and_yaml_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_base()) + "\n", encoding="utf-8")
    cfg = load_config(path, ["trainer.max_epochs=3", "optimizer.lr=1e-4", "optimizer.weight_decay=5e-2",
                             "data.train.0.images=imgs", "data.augment.train=[{name: VerticalFlip}]"])
    assert cfg.trainer.max_epochs == 3 and cfg.optimizer.lr == 1e-4
    assert cfg.optimizer.kwargs["weight_decay"] == 0.05 and isinstance(cfg.optimizer.kwargs["weight_decay"], float)
    assert cfg.data.train[0].images == str(tmp_path / "imgs")  # relative to the config file
    assert cfg.data.augment.train[0].name == "VerticalFlip"
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(path, ["trainer.max_epochs"])
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        load_config(path, ["trainer.max_epochs=x"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


def test_resolved_config_round_trips(tmp_path):
    values = _base(optimizer={"name": "SGD", "lr": 0.1, "momentum": 0.9}, loss="Dice",
                   scheduler={"name": "StepLR", "step_size": 2})
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(values), encoding="utf-8")
    cfg = load_config(first)
    assert cfg.output_dir == str(tmp_path / "runs")  # relative to the config file
    path = tmp_path / "resolved.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.optimizer.kwargs == {"momentum": 0.9} and again.scheduler.kwargs == {"step_size": 2}


def test_print_config_through_the_cli(tmp_path, capsys):
    from smp_like.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_base()), encoding="utf-8")
    assert main(["train", "--config", str(path), "--print-config", "--set", "seed=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["trainer"]["max_epochs"] == 10 and printed["data"]["batch_size"] == 8
    path.write_text(yaml.safe_dump(_base(trainr={})), encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 2
    assert "trainr: unknown key; did you mean 'trainer'?" in capsys.readouterr().err


def test_the_docs_example_config_is_valid(tmp_path):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "my.yaml"
    path.write_text(example, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.run_name == "cats-v1" and cfg.data.classes == ["background", "cat", "dog"]
    assert cfg.optimizer.encoder_lr == 1e-4 and cfg.scheduler.warmup == 100 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.train[0].images == str(tmp_path / "data" / "train" / "images")
