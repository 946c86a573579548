"""Simulated 7T multi-echo BIDS datasets with ground truth (LAION-fMRI layout).

``simulate_dataset(out, preset, seed=...)`` writes a raw BIDS dataset::

    dataset_description.json  README  participants.tsv/.json  task-images_events.json
    sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz (+.json)       the T1w (default: ses-01/anat;
      t1w_kind, t2w, anat_session: an MP2RAGE UNI, a T2w, an anatomy-only session such as
      ses-PrismaAnat/anat: :mod:`.anatomy_files`, docs/anatomy.md)
    sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_echo-1_part-mag_bold.nii.gz (+.json)
      ..._run-01_echo-1_part-phase_bold.nii.gz (+.json)        unless phase=False
      ..._run-01_echo-1_sbref.nii.gz (+.json)                  single-band reference, magnitude
      ..._run-01_events.tsv                                  onset, duration, trial_type, stim_name
    sub-01/ses-01/fmap/sub-01_ses-01_run-01_{magnitude1,magnitude2,phasediff}.nii.gz (fieldmap)
      or, with fieldmap_kind="epi", ..._dir-{AP,PA}_run-01_epi.nii.gz (reversed-PE pair)
    derivatives/truth/...                       ground truth (:mod:`.truth`, :func:`truth_paths`):
      maps on the BOLD grid, motion TSVs, voxel-shift map, BOLD → T1w transform

Func and fmap files always carry the session entity (``ses-01`` also for single-session
datasets, as LAION-fMRI); the T1w of a subject is written once, in ``ses-01/anat`` (or
``ses-<anat_session>/anat``).

Data: int16 magnitude (grey matter ~2000 at echo 1, ~1100 at echo 2) and phase
(``rad = value * pi / 4096``), RAS affine without obliquity, pixdim[4] = TR, units mm/s,
slope 1. The head of each subject is the MNI152 template under a random similarity transform
with a synthetic skull and scalp. Physics: :mod:`.signal`; anatomy and tissue parameters:
:mod:`.anatomy`; design and HRFs: :mod:`.design`; transforms and distortion: :mod:`.geometry`.
The same preset, seed and overrides give byte-identical files on one machine type (numpy's
AVX-512 paths round a few phase values one count the other way: 43 of 777,600 in the tiny
preset's run), and a subject depends only on (seed, its number), so ``subject_offset`` adds
subjects without changing others.

Spatial realism (ground truth in :mod:`.truth`; conventions in :mod:`.geometry`):

- Head motion (``motion``; laion by default): per run a rigid offset, a smooth random walk and
  1–2 abrupt jerks, every parameter within 2 mm / 2° of the motion-free head (per run the
  largest |translation| is typically 0.6–1.9 mm and |rotation| 0.6–1.9°; mean framewise
  displacement about 0.1 mm). The SBRef is in the position of the run's first volume; the
  fieldmaps and the functional truth maps are in the motion-free position.
- EPI distortion (``distortion``, by default when fieldmaps are written: demo and laion):
  BOLD and SBRef are displaced along j (PhaseEncodingDirection ``j-``) by
  ``-TotalReadoutTime * B0`` voxels, with the Jacobian intensity change; the field moves with
  the head. The B0 field spans about -230 to +150 Hz in the brain; the voxel shift in the
  brain (seed 0, subjects 1–3) has median 0.2–0.4 / p99 2.2–2.6 / max 4.9–5.7 voxels at laion
  (TotalReadoutTime 21.4 ms) and median 0.1–0.2 / p99 0.9–1.1 / max 2.1–2.4 voxels at demo
  (9.2 ms), below one voxel in 95–96 % / 99 % of the brain. The GRE fieldmap images are
  undistorted.
- Several fieldmaps per session (``fieldmaps_per_session=N``, LAION-fMRI's layout): N GRE
  fieldmaps acquired between the BOLD runs (``run-01`` .. ``run-0N`` of their own, no
  ``IntendedFor``), ``AcquisitionTime`` in every BOLD and fieldmap sidecar and a ``scans.tsv``
  per session; the field drifts linearly over the session, each fieldmap measures it at its
  time and in its own head position, each run is distorted by it at the run's centre
  (:mod:`.session_fieldmaps`).
- Gradient nonlinearity (``gradient_nonlinearity=True``): the BOLD, SBRefs and GRE fieldmaps are
  acquired with a synthetic nonlinear coil (:mod:`.gradient_coil`, up to about 3.5 mm over the
  functional grid, 0.6 mm median): a spin at true scanner position ``p`` is imaged at
  ``p + d(p)`` and then shifted by its own B0 field; the coil's ``.grad`` file is written to
  ``code/gradients/``.
- T1w pose: the T1w (another session) shows the head under a per-subject rigid transform of
  3–7° about a random axis and a 4–9 mm shift; its truth masks are in that pose and the exact
  BOLD-world → T1w-world matrix is in the truth (JSON and ITK/ANTs text).

Presets (:data:`PRESETS`); times measured on a 2-core VM shared with other jobs (first call in
a process adds ~2–4 s for importing nilearn and loading the MNI templates):

- ``tiny``: 20×24×18 at 8 mm (3016 brain, 1566 GM, 425 active voxels), 1 subject, 2 runs ×
  90 volumes, 46 image + 4 blank trials per run, 46 images × 2, no motion, no fieldmaps, not
  distorted — 1.1 s warm, 4 s cold (CLI), 16 MB; with motion, fieldmaps and distortion 1.8 s
  warm.
- ``demo``: 40×48×36 at 4 mm, 2 subjects × 4 runs × 120 volumes, 100 images × 2–3, fieldmaps
  and distortion, T1w at 2 mm — 47 s, 640 MB.
- ``regime``: 32×40×30 at 4 mm (the brain's edges are cropped; the visual cortex is kept:
  3104 of demo's 3115 active voxels), 1 subject, 6 runs × 120 volumes, 150 images × 2–3, no
  motion, no fieldmaps: small enough for comparisons over response regimes.
- ``laion``: 90×110×72 at 1.8 mm, 12 runs × 163 volumes, 88 image + 8 blank trials per run
  (440 images × 2–3, 1056 image trials), motion, fieldmaps and distortion, T1w at 1 mm —
  ``runs=1`` 121 s (1.1 GB; about 15 % more CPU than without distortion), all 12 runs (est.)
  20 min (13 GB); peak memory about 1.5 GB (volume chunks of ``chunk_volumes``; one run at a
  time).

Response model (``response=``, :mod:`.response`): how much of the image-specific response and
of the trial-to-trial variability is spatially smooth (and at what wavelength), the number and
spectrum of latent image features, the amplitude scale and the thermal/physiological noise mix;
named regimes in :data:`.response.REGIMES`. The default model gives the historical files byte
for byte; the truth adds the true image means (``image_means``, one volume per image).

Images across sessions: by default session k shows its own images (the k-th block of image
numbers). With ``shared_images=True`` every session of a subject shows session 1's images, each
in its own order, runs and repeat counts and with its own trial-to-trial variability and noise;
an image's true mean response is then the same in every session (:mod:`.design`), so one
session's responses can be checked against another's.

Grey-matter temporal SNR (quadratic detrend) is about 58 / 31 / 17 at echoes 1 / 2 / 3
(thermal-noise dominated); a T2*-weighted optimal combination gives about 1.7× the echo-2
tSNR. A single trial's response peaks at 1–3 % at echo 2 in the active (visual) grey matter.
"""

from echoprep.simulate.dataset import simulate_dataset
from echoprep.simulate.presets import PRESETS, Preset
from echoprep.simulate.truth import truth_paths

__all__ = ["PRESETS", "Preset", "simulate_dataset", "truth_paths"]
