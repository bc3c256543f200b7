"""Unlearning methods: one trainer class per method, registered by name."""

from viker.methods.base import UnlearnConfig, UnlearnTrainer
from viker.methods.ga import GradientAscent
from viker.methods.gd import GradientDifference
from viker.methods.idk import IDKFinetune
from viker.methods.idkpo import IdkPO
from viker.methods.kl import KLMinimization
from viker.methods.npo import NPO
from viker.methods.simnpo import SimNPO
from viker.methods.viker import ViKeR, ViKeRRetain

METHODS: dict[str, type[UnlearnTrainer]] = {
    cls.name: cls
    for cls in (GradientAscent, GradientDifference, KLMinimization, NPO, IDKFinetune, IdkPO, SimNPO, ViKeR,
                ViKeRRetain)
}

# Names used in tables and reports.
DISPLAY_NAMES = {"ga": "GA", "gd": "GD", "kl": "KL", "npo": "NPO", "idk": "IDK", "idkpo": "IdkPO",
                 "simnpo": "SimNPO", "viker": "ViKeR", "viker_retain": "ViKeR + retain NLL"}


def get_method(name: str) -> type[UnlearnTrainer]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["DISPLAY_NAMES", "METHODS", "UnlearnConfig", "UnlearnTrainer", "get_method"]
