"""``--findings data-space=A.nc,ldm-censored=B.nc,ldm-gaussian=C.nc[,ldm-refined=D.nc]``: who plays which part.

The three findings of the study (:mod:`.findings`) compare a data-space diffusion model with two
latent diffusion models, one with a censored and one with a Gaussian decoder. The optional fourth
role is a latent path built not to smooth (the censored LDM with a residual refiner, or any other):
a fourth finding asks whether it keeps the small scales. Parsing lives here,
as a typed function, so that the command line only hands over the text and every caller (the
demo, the study, a notebook) gets the same checks and the same one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from hpc_seaice.data.format.samples_file import read_samples
from hpc_seaice.errors import UserError

ROLE_NAMES: tuple[str, ...] = ("data-space", "ldm-censored", "ldm-gaussian")
OPTIONAL_ROLES: tuple[str, ...] = ("ldm-refined",)
OPTION = "--findings"
T = TypeVar("T")


@dataclass(frozen=True)
class Roles(Generic[T]):
    """What plays each part: samples files (``parse_findings``) or evaluated entries' names (``findings``)."""

    data_space: T
    ldm_censored: T
    ldm_gaussian: T
    ldm_refined: T | None = None  # optional: a latent path meant to keep the small scales

    def all(self) -> list[T]:
        given = [self.data_space, self.ldm_censored, self.ldm_gaussian]
        return given if self.ldm_refined is None else [*given, self.ldm_refined]

    def ldms(self) -> list[T]:
        """The paper's two LDMs (the findings about them leave the refined path out)."""
        return [self.ldm_censored, self.ldm_gaussian]

    def to_dict(self) -> dict[str, T]:
        return dict(zip(ROLE_NAMES + OPTIONAL_ROLES, self.all()))


FindingRoles = Roles[Path]  # the samples file of each role (paths as given)


def parse_findings(text: str) -> FindingRoles:
    """Parse and check ``ROLE=FILE,ROLE=FILE,ROLE=FILE[,ldm-refined=FILE]``: the three roles (and the
    optional fourth), each once, each a samples file.

    Raises:
        UserError: one line naming ``--findings`` and what is wrong (a role twice, an unknown or
            missing role, an entry without ``=``, a file that does not exist or is not a samples file).
    """
    found: dict[str, Path] = {}
    for item in (part.strip() for part in text.split(",")):
        role, sep, file = item.partition("=")
        role, file = role.strip(), file.strip()
        if not sep or not role or not file:
            raise UserError(f"{OPTION}: {item!r} is not ROLE=FILE (roles: {', '.join(ROLE_NAMES)})")
        if role not in ROLE_NAMES + OPTIONAL_ROLES:
            known = ", ".join(ROLE_NAMES + OPTIONAL_ROLES)
            raise UserError(f"{OPTION}: unknown role {role!r} (roles: {known}; the last is optional)")
        if role in found:
            raise UserError(f"{OPTION}: role {role!r} is given twice")
        found[role] = Path(file)
    missing = [role for role in ROLE_NAMES if role not in found]
    if missing:
        raise UserError(f"{OPTION}: missing role(s) {', '.join(missing)} (need {', '.join(ROLE_NAMES)})")
    for role, path in found.items():
        if not path.is_file():
            raise UserError(f"{OPTION}: {role} file {path} does not exist")
        try:
            read_samples(path).close()
        except UserError as exc:
            raise UserError(f"{OPTION}: {role} file {path} is not a samples file ({exc})") from None
    return Roles(found["data-space"], found["ldm-censored"], found["ldm-gaussian"], found.get("ldm-refined"))
