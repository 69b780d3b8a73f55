"""The spec: defaults, round trip, typed --set overrides and one clear error per bad input."""

import pytest

from lrdecay_cli.config import spec_file as spec
from lrdecay_cli.config.spec import Spec
from lrdecay_cli.config.yaml_io import parse_yaml
from lrdecay_cli.errors import UserError


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill_every_section():
    s = Spec()
    assert (s.model.name, s.optimizer.name, s.schedule.name) == ("mlp", "sgd", "constant")
    assert s.data.val_size == 5000 and s.train.batch_size == 64
    assert s.steps_per_epoch() == 860  # ceil(55000 / 64)
    assert s.data.normalize == "standard" and s.model.init == "torch"  # what runs before these fields did


def test_val_size_0_trains_on_all_images_and_plateau_may_watch_the_train_loss(tmp_path):
    loaded = spec.load(write(tmp_path, "data: {val_size: 0, limit: 1000}\n"
                                       "schedule: {name: plateau, monitor: train_loss}\n"))
    assert loaded.data.train_size() == 1000 and loaded.steps_per_epoch() == 16
    assert loaded.schedule.resolved_mode() == "min"
    assert Spec.model_validate({"data": {"val_size": 0}}).data.train_size() == 60_000


def test_resolved_spec_round_trips(tmp_path):
    loaded = spec.load(write(tmp_path, "name: rt\noptimizer: {name: adam, lr: 0.002}\n"
                                       "schedule: {name: exponential, decay_steps: 10}\n"))
    again = spec.load(write(tmp_path, loaded.dump(), "resolved.yaml"))
    assert again == loaded
    assert again.optimizer.betas == (0.9, 0.999) and again.schedule.decay_rate == 0.96


def test_section_without_name_uses_the_default_method(tmp_path):
    loaded = spec.load(write(tmp_path, "optimizer: {lr: 0.05, momentum: 0.9}\n"))
    assert loaded.optimizer.name == "sgd" and loaded.optimizer.momentum == 0.9


def test_overrides_are_typed_by_the_schema(tmp_path):
    path = write(tmp_path, "name: o\n")
    loaded = spec.load(path, ["train.epochs=3", "optimizer.lr=1e-3", "optimizer.nesterov=true",
                              "optimizer.momentum=0.9", "model.hidden=[64, 32]", "schedule.name=exponential",
                              "schedule.staircase=true", "data.limit=2000", "data.val_size=100"])
    assert loaded.train.epochs == 3 and loaded.optimizer.lr == 0.001 and loaded.optimizer.nesterov is True
    assert loaded.model.hidden == [64, 32] and loaded.schedule.staircase is True
    assert loaded.data.train_size() == 1900


BAD_SPECS = [
    ("optimizer: {lr: 0}", "optimizer.lr", "greater than 0"),
    ("optimizer: {lr: -0.1}", "optimizer.lr", "greater than 0"),
    ("optimizer: {lr: abc}", "optimizer.lr", "valid number"),
    ("optimizer: {lr: .nan}", "optimizer.lr", "finite"),
    ("optimizer: {name: adam, lr: .inf}", "optimizer.lr", "finite"),
    ("train: {epochs: 0}", "train.epochs", "greater than or equal to 1"),
    ("train: {batch_size: 0}", "train.batch_size", "greater than or equal to 1"),
    ("train: {device: gpu}", "train.device", "pattern"),
    ("schedule: {name: exponential, decay_rate: 0}", "schedule.decay_rate", "greater than 0"),
    ("schedule: {name: inverse_time, decay_rate: -2}", "schedule.decay_rate", "greater than 0"),
    ("schedule: {name: exponential, decay_steps: 0}", "schedule.decay_steps", "greater than or equal to 1"),
    ("schedule: {name: exponental}", "schedule.name", "did you mean 'exponential'"),
    ("model: {name: resnet}", "model.name", "valid names: mlp, cnn"),
    ("optimizer: {name: lion}", "optimizer.name", "valid names: sgd, adam, adamw, rmsprop, adadelta, sgd_schedulefree, adamw_schedulefree"),
    ("data: {dataset: cifar10}", "data.dataset", "mnist"),
    ("optimizer: {lrr: 0.1}", "optimizer.lrr", "did you mean 'lr'"),
    ("traine: {epochs: 1}", "traine", "did you mean"),
    ("schedule: {name: step, decay_rate: 0.5}", "schedule.decay_rate", "valid keys in schedule"),
    ("data: {limit: 1000}", "data", "val_size (5000) must be smaller than data.limit (1000)"),
    ("optimizer: {name: sgd, nesterov: true}", "optimizer", "nesterov needs momentum"),
    ("- 1\n- 2", "spec.yaml", "mapping"),
    ("42", "spec.yaml", "mapping"),
    ("", "spec.yaml", "empty"),
    ("name: a\nname: b\n", "spec.yaml", "duplicate key 'name' at line 2"),
    ("optimizer: {lr: 0.1\n", "spec.yaml", "YAML syntax error at line 2"),
]


MORE_BAD_SPECS = [
    ("train: {epochs: 1000000000000}", "train.epochs", "less than or equal to 100000"),
    ("train: {batch_size: 100000}", "spec.yaml", "train.batch_size (100000) is larger than the 55000 training images"),
    ("optimizer: {lr: 1.0e999}", "optimizer.lr", "finite"),
    ("optimizer: {lr: -.inf}", "optimizer.lr", "finite"),
    ("seed: -1", "seed", "greater than or equal to 0"),
    ("data: {val_size: -1}", "data.val_size", "greater than or equal to 0"),
    ("data: {limit: 1}", "data.limit", "greater than or equal to 2"),
    ("data: {normalize: zscore}", "data.normalize", "'standard' or 'unit'"),
    ("model: {name: mlp, init: he_normal}", "model.init", "'torch' or 'glorot_uniform'"),
    ("model: {name: cnn, init: glorot_uniform}", "model.init", "unknown key"),
    ("data: {val_size: 0}\nschedule: {name: plateau}", "spec.yaml",
     "schedule.monitor is val_loss but data.val_size is 0"),
    ("data: {val_size: 0}\nschedule: {name: plateau, monitor: val_acc}", "spec.yaml",
     "schedule.monitor is val_acc but data.val_size is 0"),
    ("model: {name: mlp, dropout: 1.0}", "model.dropout", "less than 1"),
    ("optimizer: {name: sgd_schedulefree, momentum: 0.0}", "optimizer.momentum", "greater than 0"),
    ("optimizer: {name: adamw_schedulefree, betas: [0.0, 0.999]}", "optimizer.betas.0", "greater than 0"),
    ("optimizer: {name: adamw_schedulefree, warmup_steps: 10}", "optimizer.warmup_steps", "unknown key"),
    ("optimizer: {name: adamw_schedulefree}\nschedule: {name: step}", "spec.yaml",
     "schedule.name is step but optimizer.name is adamw_schedulefree"),
    ("name: ../escape", "name", "pattern"),
    ("a: &a [1, 2]\n" + "".join(f"{k}: &{k} [*{p}, *{p}, *{p}]\n" for p, k in zip("abcdefghijklm", "bcdefghijklmn"))
     + "name: *n\n", "spec.yaml", "more than 32 YAML aliases"),
    ("optimizer: [sgd, 0.1]", "optimizer", "valid dictionary"),
    ("schedule: exponential", "schedule", "valid dictionary"),
    ("train: {device: cuda:x}", "train.device", "pattern"),
    ("\t", "spec.yaml", "YAML syntax error"),
]


@pytest.mark.parametrize("text,field,message", BAD_SPECS + MORE_BAD_SPECS, ids=[b[0][:30] for b in BAD_SPECS + MORE_BAD_SPECS])
def test_bad_spec_is_one_clear_line(tmp_path, text, field, message):
    with pytest.raises(UserError) as caught:
        spec.load(write(tmp_path, text))
    line = caught.value.line()
    assert "\n" not in line
    assert field in line and message in line


def test_a_few_aliases_are_fine(tmp_path):
    text = "model: {name: mlp, hidden: &widths [2, 4]}\nschedule: {name: multistep, milestones: *widths}\n"
    loaded = spec.load(write(tmp_path, text))
    assert loaded.model.hidden == [2, 4] and loaded.schedule.milestones == [2, 4]
    assert "&" not in loaded.dump() and "*" not in loaded.dump()  # what we write spells values out


def test_did_you_mean_for_an_unknown_key(tmp_path):
    with pytest.raises(UserError, match=r"train.epoch: unknown key 'epoch'; did you mean 'epochs'\?"):
        spec.load(write(tmp_path, "train: {epoch: 3}\n"))


BAD_OVERRIDES = [
    ("train.epoch=3", "no field 'train.epoch'; did you mean 'epochs'"),
    ("nothing.here=1", "no field 'nothing.here'"),
    ("optimizer.lr", "cannot parse --set 'optimizer.lr'"),
    ("=3", "cannot parse"),
    ("optimizer.lr=[1", "cannot parse the value"),
    ("optimizer.lr=-1", "--set optimizer.lr=-1: optimizer.lr: must be greater than 0"),
    ("name.x=1", "'name' is not a section"),
]


@pytest.mark.parametrize("override,message", BAD_OVERRIDES)
def test_bad_override_is_one_clear_line(tmp_path, override, message):
    with pytest.raises(UserError) as caught:
        spec.load(write(tmp_path, "name: x\n"), [override])
    assert message in caught.value.line()


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        spec.load(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="directory"):
        spec.load(tmp_path)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(UserError, match="cannot read"):
        spec.load(tmp_path / "binary.yaml")




def test_an_mlp_without_hidden_layers_is_a_linear_model(tmp_path):
    assert spec.load(write(tmp_path, "model: {name: mlp, hidden: []}")).model.hidden == []


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                         st.text(max_size=12))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["name", "lr", "epochs", "schedule", "optimizer", "model", "data", "train", "limit", "val_size",
         "decay_rate", "decay_steps", "hidden", "warmup", "phases", "boundaries", "steps", "x"]), inner, max_size=5)),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(yaml_values, st.text(max_size=200)))
def test_any_yaml_document_is_a_spec_or_one_clean_error(document):
    import yaml as pyyaml

    text = document if isinstance(document, str) else pyyaml.safe_dump(document)
    try:
        result = spec.from_data(parse_yaml(text, "prop.yaml"), "prop.yaml")
    except UserError as exc:
        assert "\n" not in exc.line() and exc.line()
    else:
        assert isinstance(result, Spec)


@settings(max_examples=300, deadline=None)
@given(overrides=st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["train.epochs", "optimizer.lr", "schedule.name", "model.hidden", "data.limit", "x.y", "optimizer",
         "schedule.warmup.steps", "name", "seed.x", "train"]), st.text(max_size=12))), max_size=4))
def test_any_set_strings_give_a_spec_or_one_clean_error(overrides):
    try:
        result = spec.from_data({"name": "p"}, "prop.yaml", overrides)
    except UserError as exc:
        assert "\n" not in exc.line() and exc.line()
    else:
        assert isinstance(result, Spec)


def test_validation_does_not_scan_the_run(monkeypatch):
    """A Spec is validated field by field; the LR of every step is computed only by check_schedule,
    once, where a run is about to start (a 2,000-epoch spec used to cost 2.3 s at each construction)."""
    from lrdecay_cli.config import spec as specs
    from lrdecay_cli.config.spec_file import from_data
    from lrdecay_cli.errors import UserError

    calls = []
    monkeypatch.setattr(specs, "check_run", lambda *args: calls.append(args))
    long = from_data({"train": {"epochs": 2000}, "schedule": {"name": "exponential", "decay_rate": 1e-300}}, "t")
    assert calls == []
    long.check_schedule("t")
    assert calls == [(long.schedule, long.optimizer.lr, long.steps_per_epoch(), 2000)]
    monkeypatch.undo()
    with pytest.raises(UserError, match="t: schedule: the LR underflows"):
        long.check_schedule("t")


QUICKSTART = {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
              "schedule": {"name": "exponential", "decay_steps": 860, "decay_rate": 0.5, "interval": "step",
                           "warmup": {"steps": 100}}}


@pytest.mark.parametrize("order", [0, 1])
def test_a_method_switched_by_set_starts_from_its_own_defaults(order):
    """`--set schedule.name=cosine` on the quickstart: cosine's decay_steps is its own default (the rest of the
    run), not exponential's 860 (an LR of 0 for four of five epochs); what is given with the switch counts,
    in either order; the warmup ramp, which is no method's parameter, stays."""
    import copy

    switched = spec.from_data(copy.deepcopy(QUICKSTART), "t", ["schedule.name=cosine"])
    assert switched.schedule.decay_steps is None and switched.schedule.warmup.steps == 100
    given = ["schedule.name=inverse_time", "schedule.decay_steps=50"][::1 if order else -1]
    both = spec.from_data(copy.deepcopy(QUICKSTART), "t", given)
    assert (both.schedule.decay_steps, both.schedule.decay_rate) == (50, 0.5)  # 0.5: inverse_time's own default
    assert spec.from_data(copy.deepcopy(QUICKSTART), "t", ["schedule.name=inverse_time"]).schedule.decay_steps == 1000
    adam = spec.from_data(copy.deepcopy(QUICKSTART), "t", ["optimizer.name=adam"]).optimizer
    assert adam.lr == 1e-3 and adam.betas == (0.9, 0.999)  # Adam's own LR, not SGD's 0.1


def test_a_variant_switching_method_keeps_the_warmup_and_nothing_else():
    switched = spec.merge_sections(QUICKSTART, {"schedule": {"name": "cosine", "alpha": 0.1}})
    assert switched["schedule"] == {"name": "cosine", "alpha": 0.1, "warmup": {"steps": 100}}
    same = spec.merge_sections(QUICKSTART, {"schedule": {"decay_rate": 0.8}})
    assert same["schedule"]["decay_steps"] == 860 and same["schedule"]["decay_rate"] == 0.8


def test_a_misspelt_method_in_set_gets_the_did_you_mean_line(tmp_path):
    with pytest.raises(UserError) as caught:
        spec.load(write(tmp_path, "name: o\n"), ["schedule.name=cosin"])
    line = caught.value.line()
    assert "unknown schedule method 'cosin'" in line and "did you mean 'cosine'?" in line
    assert "--set schedule.name=cosin" in line
