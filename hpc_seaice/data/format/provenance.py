"""Where a latent data set comes from: the VAE that encoded it and the fields it encodes, in one place.

A latent set is only meaningful with the VAE checkpoint that encoded it (its decoder turns the
latents back into fields) and the fields data set it encodes (its land mask and lat/lon are the
physical grid of every decoded sample, and the latent denoiser sees that coast as the ocean
fraction of each latent cell). ``encode`` records both in the manifest's ``source``:

- ``autoencoder_run``, ``autoencoder_step``: the VAE run and the (pinned) checkpoint it used;
- ``encoder_sha256``: the sha256 of that checkpoint's weights file, so a VAE retrained in the same
  folder, or weights edited in place, are told apart from the ones that encoded the set;
- ``fields_dataset``, ``fields_identity``: the fields set's path and identity
  (:func:`~hpc_seaice.data.format.identity.data_identity`: grid, land mask, statistics).

:class:`LatentProvenance` reads them once; loading, validation, model building and sampling all
take the mask, lat/lon and VAE from it, so the denoiser's ocean fraction and the decode mask
cannot come from two different data sets. The VAE weights are checked by the inference layer
(``inference.loading``), which knows the checkpoint layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_seaice.data.format.identity import data_identity, identity_difference
from hpc_seaice.data.format.manifest import Manifest, manifest_path, read_manifest
from hpc_seaice.data.format.static import Static, read_static
from hpc_seaice.data.geo.latent_grid import block_mean
from hpc_seaice.errors import UserError

WEIGHTS_FILE = "model.pt"  # the checkpoint file whose sha256 a latent set records (the VAE's weights)


@dataclass(eq=False)  # hashed by identity: one resolved object per loaded set
class LatentProvenance:
    """The VAE run and fields data set of the latent set at ``latent_path``, resolved once."""

    latent_path: Path
    grid: tuple[int, int]  # the latent grid
    autoencoder_run: Path | None
    autoencoder_step: int | str
    encoder_sha256: str | None
    fields_dataset: Path | None
    fields_identity: dict[str, Any] | None
    _fields: tuple[Manifest, Static] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, latent_path: str | os.PathLike, manifest: Manifest) -> LatentProvenance:
        """The provenance recorded in a latent set's manifest (read, not yet checked)."""
        if manifest.kind != "latent":
            raise ValueError(f"{latent_path}: a {manifest.kind} data set has no latent provenance")
        source = manifest.source or {}
        run, fields = source.get("autoencoder_run"), source.get("fields_dataset")
        return cls(
            latent_path=Path(latent_path),
            grid=(int(manifest.grid[0]), int(manifest.grid[1])),
            autoencoder_run=Path(run) if run else None,
            autoencoder_step=source.get("autoencoder_step", "latest"),
            encoder_sha256=source.get("encoder_sha256"),
            fields_dataset=Path(fields) if fields else None,
            fields_identity=source.get("fields_identity"),
        )

    def require_vae(self) -> Path:
        """The VAE run folder; a latent set that does not name one is one line."""
        if self.autoencoder_run is None:
            raise UserError(f"{self.latent_path}: latent data set does not record its autoencoder_run")
        return self.autoencoder_run

    def check_weights(self, weights_sha256: str, weights_path: str | os.PathLike) -> None:
        """Refuse VAE weights other than those that encoded the set (nothing recorded: older sets pass)."""
        if self.encoder_sha256 is not None and weights_sha256 != self.encoder_sha256:
            raise UserError(
                f"{self.latent_path}: encoded by other VAE weights than {weights_path} holds now (sha256 "
                f"{weights_sha256[:12]}, recorded {self.encoder_sha256[:12]}: retrained or replaced?); "
                "re-encode with this VAE or restore the weights that encoded it"
            )

    @property
    def fields(self) -> tuple[Manifest, Static]:
        """The fields set's manifest and static file, opened once and checked against the recorded identity."""
        if self._fields is None:
            path = self.fields_dataset
            if path is None or not manifest_path(path).is_file():
                raise UserError(
                    f"{self.latent_path}: the latent data set does not lead to its fields data set "
                    f"(manifest source.fields_dataset = {str(path) if path else None!r}), whose land mask and "
                    "lat/lon its samples are decoded on and unet.mask_channel needs; put that data set back "
                    "there or re-encode with it"
                )
            manifest, static = read_manifest(path), read_static(path)
            if self.fields_identity is not None:
                difference = identity_difference(self.fields_identity, data_identity(manifest, static))
                if difference is not None:
                    raise UserError(
                        f"{path}: not the fields data set latent set {self.latent_path} was encoded from "
                        f"({difference}); put that data set back or re-encode"
                    )
            self._fields = (manifest, static)
        return self._fields

    def check_fields(self) -> None:
        """Refuse, in one line, a fields set that is gone or is not the one the latents encode."""
        self.fields  # noqa: B018 - opening it is the check

    @property
    def static(self) -> Static:
        """The fields set's static file: land mask (1 = ocean), lat/lon, cell geometry."""
        return self.fields[1]

    @property
    def mask(self) -> np.ndarray:
        """The land mask [H, W] of the fields every decoded sample lies on."""
        return self.static.mask

    def ocean_fraction(self) -> np.ndarray:
        """Ocean fraction [h, w] of each latent cell: the block mean of the fields' mask."""
        mask = np.asarray(self.mask, dtype=np.float64)
        h, w = self.grid
        if mask.shape[0] % h or mask.shape[1] % w or mask.shape[0] // h != mask.shape[1] // w:
            raise UserError(
                f"{self.fields_dataset}: mask {mask.shape} is no whole multiple of the latent grid {h} x {w}"
            )
        return block_mean(mask, mask.shape[0] // h).astype(np.float32)


def encoding_source(
    autoencoder_run: str | os.PathLike,
    step: int,
    weights_sha256: str,
    fields_path: str | os.PathLike,
    fields: Manifest,
    static: Static,
) -> dict[str, Any]:
    """The ``source`` that ``encode`` writes into a latent manifest (what :class:`LatentProvenance` reads)."""
    return {
        "autoencoder_run": str(Path(autoencoder_run).resolve()),
        "autoencoder_step": int(step),
        "encoder_sha256": weights_sha256,
        "fields_dataset": str(Path(fields_path).resolve()),
        "fields_identity": data_identity(fields, static),
    }
