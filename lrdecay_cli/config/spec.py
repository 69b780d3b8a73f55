"""The spec's schema: pydantic models with a default for every field."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from lrdecay_cli.config.yaml_io import dump_yaml
from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules import METHODS
from lrdecay_cli.schedules.registry import check_run

DATASET_TRAIN_SIZES = {"mnist": 60_000}
"""Training-set size of each data set, known without loading it (steps per epoch, validation)."""
MAX_SEED = 2**63 - 1
"""torch.manual_seed takes up to 2**64 - 1; a signed 64-bit integer also stays exact in every CSV and JSON reader."""


class Section(BaseModel):
    """Strict base: unknown keys, NaN, infinities and values of another type (`lr: true`) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class DataSpec(Section):
    dataset: Literal["mnist"] = "mnist"
    root: str | None = Field(None, description="data directory; default $LRDECAY_DATA or ~/.cache/lrdecay")
    val_size: int = Field(5000, ge=0, description="training images held out for validation; 0: train on all of "
                                                  "them (as pytorch/examples does), with no validation metrics")
    limit: int | None = Field(None, ge=2, description="use only the first N training images, counted before the "
                                                      "validation hold-out (quick runs)")
    split_seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the train/validation split")
    normalize: Literal["standard", "unit"] = Field(
        "standard", description="pixel scaling: standard (x/255 - 0.1307) / 0.3081 (pytorch/examples), unit x/255 (Keras)")

    @model_validator(mode="after")
    def _val_fits(self):
        available = self.train_images_available()
        if self.val_size >= available:
            source = f"data.limit ({self.limit})" if self.limit else f"the {available} {self.dataset} training images"
            raise ValueError(f"val_size ({self.val_size}) must be smaller than {source} "
                             f"(try data.val_size={max(1, available // 10)})")
        return self

    def train_images_available(self) -> int:
        total = DATASET_TRAIN_SIZES[self.dataset]
        return min(self.limit, total) if self.limit else total

    def train_size(self) -> int:
        """Images left for training after the validation split."""
        return self.train_images_available() - self.val_size


class MlpSpec(Section):
    name: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field([128], description="hidden layer widths")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer")
    init: Literal["torch", "glorot_uniform"] = Field(
        "torch", description="initial weights: torch (nn.Linear's default) or glorot_uniform (Keras Dense: "
                             "xavier_uniform_ weights, zero biases)")


class CnnSpec(Section):
    name: Literal["cnn"] = "cnn"


class SgdSpec(Section):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0, description="initial learning rate")
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return self


class AdamSpec(Section):
    name: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0, description="initial learning rate")
    betas: tuple[Annotated[float, Strict(), Field(ge=0, lt=1)], Annotated[float, Strict(), Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), strict=False)  # not strict itself: YAML writes a pair as a list
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    amsgrad: bool = False


class AdamWSpec(AdamSpec):
    name: Literal["adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0)


class RmspropSpec(Section):
    name: Literal["rmsprop"] = "rmsprop"
    lr: float = Field(1e-2, gt=0, description="initial learning rate")
    alpha: float = Field(0.99, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    centered: bool = False
    weight_decay: float = Field(0.0, ge=0)


class AdadeltaSpec(Section):
    name: Literal["adadelta"] = "adadelta"
    lr: float = Field(1.0, gt=0, description="initial learning rate")
    rho: float = Field(0.9, ge=0, le=1)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class ScheduleFreeSpec(Section):
    """Schedule-free optimizers (Defazio et al. 2024, "The Road Less Scheduled"; the `schedulefree` package):
    they train at one point and are evaluated at an average of their iterates, which replaces the decay, so
    their schedule is constant (a warmup ramp allowed). The ramp is the schedule's `warmup:`: the package's own
    `warmup_steps` stays 0, so the LR the schedule sets is the LR each step uses, as lr.csv records."""

    weight_decay: float = Field(0.0, ge=0)
    r: float = Field(0.0, ge=0, description="the average weighs step k by (k + 1) ** r (0: uniformly)")
    weight_lr_power: float = Field(2.0, ge=0, description="and by the largest LR so far to this power (which "
                                                          "weighs a warmup's early steps less)")


class SgdScheduleFreeSpec(ScheduleFreeSpec):
    name: Literal["sgd_schedulefree"] = "sgd_schedulefree"
    lr: float = Field(1.0, gt=0, description="learning rate (the package's default)")
    momentum: float = Field(0.9, gt=0, lt=1, description="where the gradient is taken, between the average and "
                                                         "the SGD iterate (the package's beta)")


class AdamWScheduleFreeSpec(ScheduleFreeSpec):
    name: Literal["adamw_schedulefree"] = "adamw_schedulefree"
    lr: float = Field(0.0025, gt=0, description="learning rate (the package's default)")
    betas: tuple[Annotated[float, Strict(), Field(gt=0, lt=1)], Annotated[float, Strict(), Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), strict=False, description="beta1 as sgd_schedulefree's momentum (above 0: the average is "
                                                "found by dividing by it), beta2 the squared gradients' decay")
    eps: float = Field(1e-8, gt=0)


def _tagged(*members: type[BaseModel]):
    return Annotated[Union[members], Field(discriminator="name")]


ModelSpec = _tagged(MlpSpec, CnnSpec)
OptimizerSpec = _tagged(SgdSpec, AdamSpec, AdamWSpec, RmspropSpec, AdadeltaSpec, SgdScheduleFreeSpec,
                        AdamWScheduleFreeSpec)
ScheduleSpec = _tagged(*(method.params for method in METHODS.values()))


class TrainSpec(Section):
    epochs: int = Field(5, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto | cpu | cuda[:N] | mps")
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = Field(False, description="torch.compile the model")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to <run>/tensorboard")
    test_eval: bool = Field(True, description="evaluate on the test set at the end; a study's tuning runs do "
                                              "not, so that the test set plays no part in choosing")
    evals_per_epoch: int = Field(1, ge=1, le=1000, description="evaluate the validation set this many times an "
                                                               "epoch (every ceil(steps / N) steps and at its end), "
                                                               "each a metrics.csv row")


class Spec(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataSpec = DataSpec()
    model: ModelSpec = MlpSpec()
    optimizer: OptimizerSpec = SgdSpec()
    schedule: ScheduleSpec = METHODS["constant"].params()
    train: TrainSpec = TrainSpec()

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        """A section given without `name` means the default method (`optimizer: {lr: 0.05}` is sgd)."""
        if isinstance(data, dict):
            data = dict(data)
            for key in ("model", "optimizer", "schedule"):
                section = data.get(key)
                if isinstance(section, dict) and "name" not in section:
                    data[key] = {"name": cls.model_fields[key].default.name, **section}
        return data

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.train.batch_size > self.data.train_size():
            raise ValueError(f"train.batch_size ({self.train.batch_size}) is larger than the "
                             f"{self.data.train_size()} training images")
        return self

    @model_validator(mode="after")
    def _plateau_has_its_metric(self):
        monitor = getattr(self.schedule, "monitor", None)
        if self.data.val_size == 0 and monitor is not None and monitor.startswith("val_"):
            raise ValueError(f"schedule.monitor is {monitor} but data.val_size is 0, so there is no validation "
                             f"set to measure it on (try schedule.monitor=train_loss)")
        return self

    @model_validator(mode="after")
    def _schedule_free_is_constant(self):
        if isinstance(self.optimizer, ScheduleFreeSpec) and self.schedule.name != "constant":
            raise ValueError(f"schedule.name is {self.schedule.name} but optimizer.name is {self.optimizer.name}, "
                             f"which averages its iterates in place of a decay: its schedule must be constant "
                             f"(a warmup allowed) (try schedule.name=constant)")
        return self

    @model_validator(mode="after")
    def _evaluations_have_a_validation_set(self):
        if self.data.val_size == 0 and self.train.evals_per_epoch > 1:
            raise ValueError(f"train.evals_per_epoch is {self.train.evals_per_epoch} but data.val_size is 0, so "
                             f"there is no validation set to evaluate (set train.evals_per_epoch=1)")
        return self

    def check_schedule(self, source: str) -> None:
        """Refuse a schedule that does not fit this run or whose LRs over it are not sane (`check_run`); not part
        of validation, since it builds the schedule: it runs once, before a run or preview."""
        try:
            check_run(self.schedule, self.optimizer.lr, self.steps_per_epoch(), self.train.epochs)
        except UserError as exc:  # a run-dependent parameter check of the method's builder
            raise UserError(exc.what, where=f"{source}: {exc.where}" if exc.where else source, fix=exc.fix) from None
        except (ArithmeticError, ValueError) as exc:
            raise UserError(str(exc), where=f"{source}: schedule", fix=f"fix the schedule in {source}") from None

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch: the last, partial batch counts."""
        return math.ceil(self.data.train_size() / self.train.batch_size)

    def dump(self) -> str:
        """The resolved spec (every default filled in) as YAML that `load` reads back unchanged."""
        return dump_yaml(self.model_dump(mode="json"))
