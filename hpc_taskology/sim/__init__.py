"""The simulator: labelled SceneNet-style scenes, ray cast in torch, split over MPI ranks, written in the datasets schema.

Data flow (one module each)::

    config.py   TOML [sim] -> SimConfig (typed, validated; errors name sim.<field>)
    scene.py    (seed, sequence) -> Scene: boxes, spheres, cylinders, rectangles; materials; lights; class table
    camera.py   smooth trajectories (sums of sinusoids) -> cam_to_world(t); intrinsics from the field of view
    render.py   vectorised ray casting: rgb, z-depth, normals, classes, instances, object motion
    lidar.py    optional spinning LiDAR: range images, points, 3-D boxes of movable objects (group "lidar")
    simulate.py frames -> schema samples -> pack_parallel (one HDF5 file, any number of ranks); SceneNet layout
    bench.py    taskology bench simulate
    preview.py  contact sheet PNG of a packed file

Quickstart::

    taskology simulate jobs/sim_indoor.toml -o datasets/sim_indoor.h5
    jobs/mpirun.sh -n 4 .venv/bin/python -m mpi4py -m hpc_taskology simulate jobs/sim_street.toml -o sim_street.h5
    python -m hpc_taskology.sim.preview datasets/sim_indoor.h5 -o preview.png
    taskology bench simulate --json

Conventions: world frame z up, metres; camera frame OpenCV (x right, y down, z forward); pixel (i, j) centre at
(x = j, y = i); ``depth`` = z along the optical axis (m); ``cam_to_world`` maps camera to world coordinates;
``normals`` unit vectors in the camera frame facing the camera; ``object_motion`` (m) = 3-D motion of the point seen
at each pixel until the next frame, in this frame's camera coordinates (the warp of
:mod:`hpc_taskology.losses.warp` adds it after the rotation, ``X2 = R X1 + T + m``, so pass ``R m`` there for an
exact warp; ``m`` itself is off by at most ``θ |m|``, θ the inter-frame rotation angle: 0.3° per frame for the
street trajectories).
"""
