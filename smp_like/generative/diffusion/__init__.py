"""Diffusion maths: the parameter-free scheduler (DDPM / DDIM steps, schedules, guidance)."""

from .scheduler import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    DiffusionScheduler,
    SchedulerStepOutput,
    classifier_free_guidance,
)

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
    "DiffusionScheduler",
    "SchedulerStepOutput",
    "classifier_free_guidance",
]
