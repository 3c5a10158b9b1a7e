"""``taskology pack FORMAT SRC -o OUT.h5``: native dataset layout → one packed HDF5 file (datasets/README.md).

Runs alone, or under MPI for parallel packing (``jobs/mpirun.sh -n 4 taskology pack ...``: each rank packs a slice of
the frames, rank 0 merges).  The output is written under a temporary name and renamed at the end; a failed run
leaves an existing OUT.h5 untouched.  The source's licence text goes into the file's ``licence`` attribute and into
``LICENSE-<OUT stem>.txt`` beside it.

Examples::

    taskology pack hololens ../shared/data/hololens_rgbd_000 -o datasets/hololens_mediator.h5 --frames 3:152
    taskology pack kitti_raw ../shared/data/kitti_raw_tiny -o datasets/kitti_raw_tiny.h5 --compression zstd
    taskology pack tum ../shared/data/tum_rgbd_pairs -o datasets/tum_eval.h5
"""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    from ..data.pack import FORMATS
    from ..data.schema import COMPRESSIONS

    p.add_argument("format", choices=list(FORMATS), help="source layout")
    p.add_argument("src", help="source folder in its native layout")
    p.add_argument("-o", "--output", required=True, help="output .h5 file")
    p.add_argument("--compression", choices=COMPRESSIONS, default="lz4", help="per-sample chunk compression (default lz4)")
    p.add_argument("--frames", metavar="A:B", help="inclusive range of frame ids (the format's own frame numbers: "
                   "file-name numbers for kitti_raw/hololens/scannet/kitti_stereo, frame_num for scenenet, index in "
                   "the sequence for tum); 'A:' and ':B' are open-ended")
    p.add_argument("--height", type=int, default=0, help="resize to this height in pixels (K updated); 0 = native")
    p.add_argument("--width", type=int, default=0, help="resize to this width in pixels (K updated); 0 = native")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    g = p.add_argument_group("format options")
    g.add_argument("--no-stereo", action="store_true", help="kitti_raw: do not store image_03 as rgb_right")
    g.add_argument("--camera", default="auto", help="tum: fr1|fr2|fr3|ros_default|auto (default auto)")
    g.add_argument("--protobuf", help="scenenet: trajectory protobuf (default: every *.pb in SRC)")
    g.add_argument("--pose", default="mid", choices=["mid", "shutter_open"], help="scenenet: camera pose used")
    g.add_argument("--focal", type=float, help="kitti_stereo: focal length in px where no calib file (default 721.5377)")
    g.add_argument("--baseline", type=float, help="kitti_stereo: baseline in m where no calib file (default 0.54)")


def _options(args) -> dict:
    if args.format == "kitti_raw":
        return {"stereo": not args.no_stereo, "resizing": bool(args.height or args.width)}
    if args.format == "tum":
        return {"camera": args.camera}
    if args.format == "scenenet":
        return {"protobuf": args.protobuf, "pose": args.pose}
    if args.format == "kitti_stereo":
        return {k: v for k, v in (("focal", args.focal), ("baseline", args.baseline)) if v is not None}
    return {}


def run(args) -> int:
    from pathlib import Path

    from ..data.pack import get_format
    from ..data.pack.common import FrameRange, write_licence_file
    from ..data.parallel import launched_comm, pack_plan

    comm = launched_comm()
    rank = comm.rank if comm is not None else 0
    out = Path(args.output)
    multi = comm is not None and comm.size > 1
    try:
        plan, err = None, None
        try:
            plan = get_format(args.format).plan(Path(args.src), FrameRange.parse(args.frames), **_options(args))
            plan = plan.resized(args.height, args.width)
        except (OSError, ValueError) as e:
            err = e
        if multi and not all(comm.allgather(err is None)):  # every rank must enter the packing collectives, or none
            raise err or RuntimeError("planning failed on another rank")
        if err is not None:
            raise err
        pack_plan(plan, out, compression=args.compression, comm=comm, progress=not args.no_progress)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"taskology pack: rank {rank}: {e}" if multi else f"taskology pack: {e}", file=sys.stderr)
        return 1
    if rank == 0:
        lic = write_licence_file(out, plan.licence)
        size = out.stat().st_size
        print(f"taskology pack: wrote {out} ({len(plan.frames)} samples, {plan.height}x{plan.width}, "
              f"{size / 2**20:.1f} MiB, {args.compression}); licence in {lic}", flush=True)
    return 0
