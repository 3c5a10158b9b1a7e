"""SceneNet RGB-D's trajectory protobuf messages, built at import time without ``protoc``.

The schema is SceneNet's ``scenenet.proto`` (jmccormac/pySceneNetRGBD, package ``scenenet``, proto2), transcribed
field by field (same names, numbers and types, so files written by SceneNet's tools parse here and vice versa).
The descriptors are built with the ``protobuf`` package's ``descriptor_pb2.FileDescriptorProto``, added to a
private ``descriptor_pool.DescriptorPool`` and turned into classes with ``message_factory.GetMessageClass``.

Use :func:`messages` → a namespace with ``Trajectories``, ``Trajectory``, ``View``, ``Pose``, ``Position``,
``Instance``, ``SceneLayout``, ``LightInfo``, ``RandomObjectInfo``.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

_F, _I, _S, _M, _E = "float", "int32", "string", "message", "enum"

# message name -> (fields [(name, number, type, label, type_name)], enums {name: {value_name: number}}, nested)
_SCHEMA = {
    "SceneLayout": ([("layout_type", 1, _E, "optional", "SceneLayout.LayoutType"), ("model", 2, _S, "optional", None)],
                    {"LayoutType": {"BATHROOM": 1, "BEDROOM": 2, "KITCHEN": 3, "LIVING_ROOM": 4, "OFFICE": 5}}, {}),
    "LightInfo": ([("light_type", 1, _E, "optional", "LightInfo.LightType")],
                  {"LightType": {"SPHERE": 1, "PARALLELOGRAM": 2}}, {}),
    "RandomObjectInfo": (
        [("shapenet_hash", 1, _S, "optional", None), ("height_meters", 2, _F, "optional", None),
         ("object_pose", 3, _M, "optional", "RandomObjectInfo.Transformation")], {},
        {"Transformation": ([(n, i, _F, "optional", None) for i, n in enumerate(
            ["translation_x", "translation_y", "translation_z", "rotation_mat11", "rotation_mat12", "rotation_mat13",
             "rotation_mat21", "rotation_mat22", "rotation_mat23", "rotation_mat31", "rotation_mat32",
             "rotation_mat33"], 1)], {}, {})}),
    "Instance": ([("instance_id", 1, _I, "optional", None), ("semantic_wordnet_id", 2, _S, "optional", None),
                  ("semantic_english", 3, _S, "optional", None),
                  ("instance_type", 4, _E, "optional", "Instance.InstanceType"),
                  ("light_info", 5, _M, "optional", "LightInfo"), ("object_info", 6, _M, "optional", "RandomObjectInfo")],
                 {"InstanceType": {"BACKGROUND": 1, "LAYOUT_OBJECT": 2, "LIGHT_OBJECT": 3, "RANDOM_OBJECT": 4}}, {}),
    "Position": ([("x", 1, _F, "optional", None), ("y", 2, _F, "optional", None), ("z", 3, _F, "optional", None)], {}, {}),
    "Pose": ([("camera", 1, _M, "optional", "Position"), ("lookat", 2, _M, "optional", "Position"),
              ("timestamp", 3, _F, "optional", None)], {}, {}),
    "View": ([("frame_num", 1, _I, "optional", None), ("shutter_open", 2, _M, "optional", "Pose"),
              ("shutter_close", 3, _M, "optional", "Pose")], {}, {}),
    "Trajectory": ([("layout", 1, _M, "optional", "SceneLayout"), ("instances", 2, _M, "repeated", "Instance"),
                    ("views", 3, _M, "repeated", "View"), ("render_path", 4, _S, "optional", None)], {}, {}),
    "Trajectories": ([("trajectories", 1, _M, "repeated", "Trajectory")], {}, {}),
}


def _message_proto(descriptor_pb2, name: str, spec) -> object:
    F = descriptor_pb2.FieldDescriptorProto
    types = {_F: F.TYPE_FLOAT, _I: F.TYPE_INT32, _S: F.TYPE_STRING, _M: F.TYPE_MESSAGE, _E: F.TYPE_ENUM}
    labels = {"optional": F.LABEL_OPTIONAL, "repeated": F.LABEL_REPEATED}
    fields, enums, nested = spec
    msg = descriptor_pb2.DescriptorProto(name=name)
    for ename, values in enums.items():
        e = msg.enum_type.add(name=ename)
        for vname, num in values.items():
            e.value.add(name=vname, number=num)
    for nname, nspec in nested.items():
        msg.nested_type.append(_message_proto(descriptor_pb2, nname, nspec))
    for fname, num, ftype, label, tname in fields:
        f = msg.field.add(name=fname, number=num, type=types[ftype], label=labels[label])
        if tname:
            f.type_name = f".scenenet.{tname}"
    return msg


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """Message classes of ``scenenet.proto``.  Raises ``ImportError`` naming the missing ``protobuf`` package."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as e:  # pragma: no cover - protobuf is a dependency of the venv
        raise ImportError(f"SceneNet trajectories need the 'protobuf' package (pip install protobuf): {e}") from e
    fd = descriptor_pb2.FileDescriptorProto(name="hpc_taskology/scenenet.proto", package="scenenet", syntax="proto2")
    for name, spec in _SCHEMA.items():
        fd.message_type.append(_message_proto(descriptor_pb2, name, spec))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return SimpleNamespace(**{n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"scenenet.{n}"))
                              for n in _SCHEMA})
