"""Protobuf and gRPC code generation with Debian's protoc and plugins.

Bazel 4's native cc_proto_library / proto_library need @com_google_protobuf's
sources, which an offline Debian machine does not have. Instead a genrule
runs the system compiler (/usr/bin/protoc, 3.21) with the system gRPC plugins
(/usr/bin/grpc_cpp_plugin, /usr/bin/grpc_python_plugin, 1.51), and plain
cc_library / py_library rules wrap its outputs.

The package that calls these macros is the proto root: in //proto,
proto/hearth/v1/config.proto is imported as "hearth/v1/config.proto", its C++
header is included as "hearth/v1/config.pb.h" and its Python module is
`hearth.v1.config_pb2`. Well-known types come from /usr/include/google/protobuf.

One call declares up to four targets for a set of .proto files:

    hearth_proto_library(
        name = "hearth_v1_config",
        srcs = ["hearth/v1/config.proto"],
        py = True,
    )
    hearth_proto_library(
        name = "hearth_v1",
        srcs = ["hearth/v1/vm.proto", "hearth/v1/hearth.proto"],
        deps = [":hearth_v1_config_proto"],
        grpc = True,
        py = True,
    )

  <name>_proto  filegroup: srcs plus the .proto files of deps, for importers.
  <name>_cc     cc_library: messages (+ gRPC service stubs if grpc).
  <name>_py     py_library (if py): <x>_pb2 (+ <x>_pb2_grpc if grpc) modules.
  <name>_cc_gen / <name>_py_gen  the genrules.

deps name other libraries by their `_proto` target; the matching `_cc` and
`_py` targets become dependencies of this library's.

Python: the generated modules live under the package `hearth`, which is also
this workspace's name, so Bazel's automatic __init__.py files would shadow
them. py_binary / py_test rules that use them need
`legacy_create_init = False` (hearth and hearth.v1 are then namespace
packages).
"""

_PROTOC = "/usr/bin/protoc"
_GRPC_CPP_PLUGIN = "/usr/bin/grpc_cpp_plugin"
_GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"

# protoc 3.21 and grpc_cpp_plugin 1.51 output compiles cleanly under the
# workspace's -Wall -Wextra -Werror with gcc 12; add -Wno-* options here only
# when a compiler update proves one is needed.
_GENERATED_CC_COPTS = []

_PROTO_SUFFIX = "_proto"

def _base(src):
    if not src.endswith(".proto"):
        fail("%s: not a .proto file" % src)
    return src[:-len(".proto")]

def _sibling(dep, suffix):
    """Maps ":foo_proto" or "//p:foo_proto" to the same label with `suffix`."""
    if not dep.endswith(_PROTO_SUFFIX):
        fail("deps must name hearth_proto_library `%s` targets, got %s" %
             (_PROTO_SUFFIX, dep))
    return dep[:-len(_PROTO_SUFFIX)] + suffix

def _protoc_cmd(srcs, out_flags):
    # $(RULEDIR) is bazel-out/<config>/bin/<package>: protoc writes
    # hearth/v1/x.pb.h under it, which is exactly the declared output.
    root = native.package_name() or "."
    return " ".join([
        _PROTOC,
        "--proto_path=" + root,
        "--proto_path=/usr/include",
    ] + out_flags + ["$(execpath %s)" % s for s in srcs])

def hearth_proto_library(
        name,
        srcs,
        deps = [],
        grpc = False,
        py = False,
        visibility = None):
    """Generates C++ (and optionally Python) code for `srcs`.

    Args:
      name: base name; targets are <name>_proto, <name>_cc, <name>_py.
      srcs: .proto files of this package, relative to it.
      deps: `<other>_proto` targets of the libraries srcs import.
      grpc: also generate gRPC service code (C++ and, with py, Python).
      py: also declare <name>_py.
      visibility: visibility of the declared targets.
    """
    native.filegroup(
        name = name + _PROTO_SUFFIX,
        srcs = srcs + deps,
        visibility = visibility,
    )
    inputs = srcs + deps

    hdrs = [_base(s) + ".pb.h" for s in srcs]
    cc_srcs = [_base(s) + ".pb.cc" for s in srcs]
    out_flags = ["--cpp_out=$(RULEDIR)"]
    if grpc:
        hdrs += [_base(s) + ".grpc.pb.h" for s in srcs]
        cc_srcs += [_base(s) + ".grpc.pb.cc" for s in srcs]
        out_flags += [
            "--plugin=protoc-gen-grpc=" + _GRPC_CPP_PLUGIN,
            "--grpc_out=$(RULEDIR)",
        ]
    native.genrule(
        name = name + "_cc_gen",
        srcs = inputs,
        outs = hdrs + cc_srcs,
        cmd = _protoc_cmd(srcs, out_flags),
        message = "Generating C++ protobuf code for %s" % name,
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name + "_cc",
        srcs = cc_srcs,
        hdrs = hdrs,
        # Adds the package's source and output directories to the include
        # path (as -isystem), so users write #include "hearth/v1/x.pb.h".
        includes = ["."],
        copts = _GENERATED_CC_COPTS,
        deps = [_sibling(d, "_cc") for d in deps] + [
            "//third_party:protobuf",
        ] + (["//third_party:grpc"] if grpc else []),
        visibility = visibility,
    )

    if not py:
        return
    py_outs = [_base(s) + "_pb2.py" for s in srcs]
    py_flags = ["--python_out=$(RULEDIR)"]
    if grpc:
        py_outs += [_base(s) + "_pb2_grpc.py" for s in srcs]
        py_flags += [
            "--plugin=protoc-gen-grpc_python=" + _GRPC_PYTHON_PLUGIN,
            "--grpc_python_out=$(RULEDIR)",
        ]
    native.genrule(
        name = name + "_py_gen",
        srcs = inputs,
        outs = py_outs,
        cmd = _protoc_cmd(srcs, py_flags),
        message = "Generating Python protobuf code for %s" % name,
        visibility = ["//visibility:private"],
    )
    native.py_library(
        name = name + "_py",
        srcs = py_outs,
        # Puts the package directory on sys.path: `import hearth.v1.x_pb2`.
        imports = ["."],
        srcs_version = "PY3",
        deps = [_sibling(d, "_py") for d in deps],
        visibility = visibility,
    )
