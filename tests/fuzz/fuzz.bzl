"""hearth_fuzz_test: one libFuzzer target, two ways of running it.

Normal builds (gcc, and --config=asan) link the target with fuzz_driver.cc:
a plain cc_test that feeds it its seed corpus plus a fixed set of
deterministic pseudo-random inputs, so `bazel test //...` exercises every
fuzzer for a few seconds. Under --config=fuzz (clang; see tools/fuzz) the
same sources link with -fsanitize=fuzzer and libFuzzer's own main().
"""

def hearth_fuzz_test(name, srcs, deps = [], tags = [], **kwargs):
    corpus = "corpus/" + name
    native.cc_test(
        name = name,
        size = "small",
        srcs = srcs,
        args = [native.package_name() + "/" + corpus],
        data = native.glob([corpus + "/**"]),
        # Static outside the sanitizer builds: //third_party:glog carries
        # the non-PIC libunwind.a that only a static link accepts.
        linkopts = select({
            "//tests/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//bazel:asan": [],
            "//conditions:default": ["-static"],
        }),
        linkstatic = True,
        tags = tags + ["fuzz_target"],
        deps = deps + [":fuzz_support"] + select({
            "//tests/fuzz:fuzzing": [],
            "//conditions:default": [":fuzz_driver"],
        }),
        **kwargs
    )
