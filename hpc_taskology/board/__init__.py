"""Prediction board: peers' stale predictions on the mediator dataset over one-sided MPI windows (RMA, passive target).

Quick use (every rank of the world, same arguments)::

    from hpc_taskology.board import PredictionBoard
    outputs = {"depth": {"depth": (1, H, W)}, "normals": {"normals": (3, H, W)}}
    with PredictionBoard(topo, n_samples=len(mediator), outputs=outputs, cfg=job.board) as board:
        for step in range(steps):
            ...
            board.publish(f"{topo.task}.depth", ids, depth_pred, step)        # producer, every mediator step
            peer = board.read("normals", "normals", ids, now_step=step)       # consumer, no call from the producer
            loss = consistency(pred, peer.values, sample_mask=peer.usable)
            if board.refresh_due(step): board.refresh(f"{topo.task}.depth", predict_fn, step, batch_size=8)
        board.set_state("finished", step)

Modules: :mod:`.board` (PredictionBoard), :mod:`.window` (one RMA window), :mod:`.codec` (entry layout),
:mod:`.policy` (staleness, metrics, capacity), :mod:`.layout` (sharding, GroupLayout), :mod:`.bench`
(``taskology bench exchange``).  Design notes, OpenMPI settings and measured figures: ``README.md`` beside this file.
"""

from .board import STATES, PeerPredictions, PeerState, PredictionBoard
from .codec import EntryCodec
from .errors import BoardCapacityError, BoardError, BoardTimeoutError
from .layout import GroupLayout, owner_of, shard_ids, shard_len, slot_of

__all__ = [
    "PredictionBoard", "PeerPredictions", "PeerState", "STATES", "EntryCodec", "GroupLayout",
    "BoardError", "BoardCapacityError", "BoardTimeoutError", "owner_of", "slot_of", "shard_len", "shard_ids",
]
